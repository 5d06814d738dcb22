// The fan's page: sign in, wait in line, pick a seat, pay, see the ticket. Plain script, no build.
// Status is pushed (Server-Sent Events read with fetch, so the Queue-Token stays in a header);
// when a stream is cut, the page polls as the API says (poll_after_ms) and opens it again.
"use strict";

const TEXT = {
  en: {
    title: "Concert tickets", skip: "Skip to content",
    signin_title: "Sign in", signin_help: "Sign in to join the line. (Development sign-in: any name.)",
    signin_name: "Your user name", signin_button: "Sign in",
    signin_elsewhere: "Sign in on the ticket site first; it brings you back here.",
    choose_title: "Which concert?", choose_label: "Concert id", choose_button: "Join the line",
    waiting_title: "You are in line",
    position: (n) => `Your place: ${n.toLocaleString("en")}`,
    eta: (lo, hi) => `Your turn in about ${span(lo, hi, "en")}`,
    eta_unknown: "Waiting for the line to move",
    progress: (p) => `${p}% of the way to the front`,
    keep_open: "Keep this page open: it holds your place. Reloading keeps it too.",
    paused: "Every seat is held by fans paying right now. Seats come back if a payment fails; keep your place.",
    reconnecting: "Connection lost; checking your place every few seconds.",
    live: "Live: your place updates by itself.",
    seats_title: "Pick your seat", available: "Available", held: "Held", sold: "Sold",
    seat: (id) => `Seat ${id}`,
    seat_label: (id, st) => `Seat ${id}, ${ {available: "available", held: "held by another fan", sold: "sold"}[st] }`,
    turn: (t, s) => `It is your turn. Pick a seat by ${t} (${s} s left).`,
    turn_soon: (s) => `Only ${s} s left to pick a seat. Choose now, or you go back to the line.`,
    turn_over: "Your turn ended before you picked a seat.",
    hold_title: "Your seat is held",
    holding: (id) => `Reserving seat ${id}...`,
    held_until: (id, t) => `Seat ${id} is yours until ${t}. Pay before then.`,
    hold_left: (s) => `${s} s left to pay`,
    pay_button: "Pay now", paying: "Paying...",
    confirmed_title: "You have a ticket", confirmed_text: "Show this at the door.",
    ticket_concert: (c) => `Concert ${c}`, ticket_ref: (r) => `Reference ${r}`,
    rejected_title: "Someone else got that seat",
    rejected_text: (id) => `Another fan reserved seat ${id} a moment before you. Pick another seat.`,
    expired_title: "Your hold ran out",
    expired_text: (id) => `You did not pay within the hold time, so seat ${id} went back on sale. Nothing was charged.`,
    failed_title: "The payment did not go through",
    failed_text: (id) => `Your payment for seat ${id} was declined and nothing was charged. The seat went back on sale.`,
    refunded_title: "Your payment was refunded",
    refunded_text: (id) => `Your payment for seat ${id} arrived after the hold had ended. It was refunded in full.`,
    sold_out_title: "Sold out", sold_out_text: "Every seat of this concert has been bought. The line is closed.",
    dropped_title: "You left the line",
    dropped_text: "This page was closed or offline for too long, so your place was given up.",
    turn_lost_title: "Your turn ended", turn_lost_text: "Your turn passed before you chose a seat.",
    enter_again: "Join the line again", pick_again: "Pick another seat",
    no_concert: "There is no such concert on sale.",
    busy: (s) => `Very busy right now; trying again in ${s} s. You keep your place.`,
    error: "Something went wrong; trying again.",
    who: (u) => `Signed in as ${u}`,
  },
  ko: {
    title: "콘서트 예매", skip: "본문으로 건너뛰기",
    signin_title: "로그인", signin_help: "로그인하고 대기열에 들어가세요. (개발용 로그인: 아무 이름이나)",
    signin_name: "사용자 이름", signin_button: "로그인",
    signin_elsewhere: "먼저 예매 사이트에서 로그인하세요. 로그인 후 이 페이지로 돌아옵니다.",
    choose_title: "어떤 공연인가요?", choose_label: "공연 ID", choose_button: "대기열 들어가기",
    waiting_title: "대기 중입니다",
    position: (n) => `내 순서: ${n.toLocaleString("ko")}번째`,
    eta: (lo, hi) => `예상 대기 시간: 약 ${span(lo, hi, "ko")}`,
    eta_unknown: "대기열이 움직이기를 기다리는 중",
    progress: (p) => `맨 앞까지 ${p}% 왔습니다`,
    keep_open: "이 페이지를 열어 두세요. 순서가 유지됩니다. 새로고침해도 순서는 그대로입니다.",
    paused: "지금은 모든 좌석이 결제 중인 다른 팬에게 잡혀 있습니다. 결제가 실패하면 좌석이 다시 나옵니다. 순서를 유지하세요.",
    reconnecting: "연결이 끊겼습니다. 몇 초마다 순서를 확인합니다.",
    live: "실시간: 순서가 자동으로 갱신됩니다.",
    seats_title: "좌석을 고르세요", available: "선택 가능", held: "선점됨", sold: "판매 완료",
    seat: (id) => `${id}번 좌석`,
    seat_label: (id, st) => `${id}번 좌석, ${ {available: "선택 가능", held: "다른 팬이 선점", sold: "판매 완료"}[st] }`,
    turn: (t, s) => `내 차례입니다. ${t}까지 좌석을 고르세요 (${s}초 남음).`,
    turn_soon: (s) => `좌석 선택 시간이 ${s}초 남았습니다. 지금 고르지 않으면 대기열로 돌아갑니다.`,
    turn_over: "좌석을 고르기 전에 차례가 끝났습니다.",
    hold_title: "좌석을 잡아 두었습니다",
    holding: (id) => `${id}번 좌석을 예약하는 중...`,
    held_until: (id, t) => `${id}번 좌석은 ${t}까지 내 것입니다. 그 전에 결제하세요.`,
    hold_left: (s) => `결제까지 ${s}초 남음`,
    pay_button: "지금 결제", paying: "결제 중...",
    confirmed_title: "예매 완료", confirmed_text: "입장할 때 이 화면을 보여 주세요.",
    ticket_concert: (c) => `공연 ${c}`, ticket_ref: (r) => `예매 번호 ${r}`,
    rejected_title: "다른 팬이 먼저 예약했습니다",
    rejected_text: (id) => `${id}번 좌석은 조금 먼저 다른 팬이 예약했습니다. 다른 좌석을 고르세요.`,
    expired_title: "좌석 선점 시간이 끝났습니다",
    expired_text: (id) => `선점 시간 안에 결제하지 않아 ${id}번 좌석이 다시 판매됩니다. 결제된 금액은 없습니다.`,
    failed_title: "결제가 완료되지 않았습니다",
    failed_text: (id) => `${id}번 좌석 결제가 거절되었고 청구된 금액은 없습니다. 좌석은 다시 판매됩니다.`,
    refunded_title: "결제가 환불되었습니다",
    refunded_text: (id) => `${id}번 좌석의 선점 시간이 끝난 뒤에 결제가 도착해 전액 환불되었습니다.`,
    sold_out_title: "매진", sold_out_text: "이 공연의 모든 좌석이 판매되었습니다. 대기열이 닫혔습니다.",
    dropped_title: "대기열에서 나왔습니다",
    dropped_text: "페이지가 너무 오래 닫혀 있거나 오프라인이어서 순서가 취소되었습니다.",
    turn_lost_title: "차례가 끝났습니다", turn_lost_text: "좌석을 고르기 전에 차례가 지나갔습니다.",
    enter_again: "대기열 다시 들어가기", pick_again: "다른 좌석 고르기",
    no_concert: "판매 중인 공연이 아닙니다.",
    busy: (s) => `지금 접속이 많습니다. ${s}초 후 다시 시도합니다. 순서는 유지됩니다.`,
    error: "문제가 생겼습니다. 다시 시도합니다.",
    who: (u) => `${u}(으)로 로그인됨`,
  },
};

const $ = (id) => document.getElementById(id);
const store = window.localStorage;
const state = { lang: "en", user: null, jwt: null, concert: null, token: null, view: null,
                reservation: null, turnTimer: null, holdTimer: null, seatTimer: null, abort: null };

function t(key, ...args) {
  const v = TEXT[state.lang][key];
  return typeof v === "function" ? v(...args) : v;
}

function span(lo, hi, lang) {
  const unit = (s) => s < 90 ? (lang === "ko" ? `${s}초` : `${s} s`)
                             : (lang === "ko" ? `${Math.round(s / 60)}분` : `${Math.round(s / 60)} min`);
  return lo === hi ? unit(lo) : `${unit(lo)}–${unit(hi)}`;
}

function clock(iso) {  // in the fan's own time zone
  return new Intl.DateTimeFormat(state.lang, { timeStyle: "medium" }).format(new Date(iso));
}

function secondsUntil(iso) { return Math.max(0, Math.round((Date.parse(iso) - Date.now()) / 1000)); }

function show(id) {
  for (const s of document.querySelectorAll("main > section")) s.hidden = s.id !== id;
}

function announce(text) { $("announce").textContent = text; }

function setLanguage(lang, remember) {
  state.lang = TEXT[lang] ? lang : "en";
  document.documentElement.lang = state.lang;
  if (remember) store.setItem("fan.lang", state.lang);
  for (const el of document.querySelectorAll("[data-t]")) el.textContent = t(el.dataset.t);
  for (const b of document.querySelectorAll("[data-lang]"))
    b.setAttribute("aria-pressed", String(b.dataset.lang === state.lang));
  document.title = t("title");
  if (state.user) $("who").textContent = t("who", state.user);
  if (state.view) render(state.view);
  if (state.reservation) renderReservation(state.reservation);
}

// --- HTTP -------------------------------------------------------------------------------------

async function api(method, path, { body, headers } = {}) {
  const response = await fetch(path, {
    method, headers: { "Content-Type": "application/json", ...(headers || {}) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try { data = await response.json(); } catch (_) { data = null; }
  return { status: response.status, data, retryAfter: Number(response.headers.get("Retry-After") || 0) };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Server-Sent Events over fetch: calls onEvent(name, data); resolves when the stream ends.
async function stream(path, headers, onEvent, signal) {
  const response = await fetch(path, { headers: { Accept: "text/event-stream", ...headers }, signal });
  if (!response.ok || !response.body) {
    let data = null;
    try { data = await response.json(); } catch (_) { data = null; }
    return { status: response.status, data };
  }
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return { status: 200, ended: true };
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let name = "message", data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) name = line.slice(7);
        else if (line.startsWith("data: ")) data += line.slice(6);
      }
      if (data) onEvent(name, JSON.parse(data));
    }
  }
}

// --- identity ---------------------------------------------------------------------------------

function readIdentity() {
  // A ticket site hands its login over in the fragment (#id_token=...), which never reaches a server.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.get("id_token")) {
    store.setItem("fan.jwt", fragment.get("id_token"));
    history.replaceState(null, "", location.pathname + location.search);
  }
  const jwt = store.getItem("fan.jwt");
  if (!jwt) return false;
  try {
    const claims = JSON.parse(atob(jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    if (claims.exp * 1000 < Date.now() + 60000) { store.removeItem("fan.jwt"); return false; }
    state.jwt = jwt;
    state.user = claims.sub;
    $("who").textContent = t("who", state.user);
    return true;
  } catch (_) {
    store.removeItem("fan.jwt");
    return false;
  }
}

async function signIn(event) {
  event.preventDefault();
  const user = $("fan-name").value.trim();
  const r = await api("POST", "/dev/sign-in", { body: { user_id: user } });
  if (r.status === 200 && r.data.id_token) {
    store.setItem("fan.jwt", r.data.id_token);
    readIdentity();
    start();
  } else if (r.status === 404) {
    $("signin-error").textContent = t("signin_elsewhere");
  } else {
    $("signin-error").textContent = (r.data && r.data.error && r.data.error.message) || t("error");
  }
}

// --- the line ---------------------------------------------------------------------------------

function tokenKey() { return `fan.queue.${state.concert}.${state.user}`; }

async function enterLine() {
  // One place per fan and concert: a reload or a second tab finds the token kept here, and the
  // queue answers the same place to the same fan anyway.
  const kept = store.getItem(tokenKey());
  if (kept) {
    const r = await api("GET", `/v1/queue/tokens/${kept}`);
    if (r.status === 200) return follow(kept, r.data);
    store.removeItem(tokenKey());
    store.removeItem(tokenKey() + ".first");
  }
  for (;;) {
    const r = await api("POST", "/v1/queue/tokens", {
      body: { concert_id: state.concert }, headers: { Authorization: `Bearer ${state.jwt}` } });
    if (r.status === 200 || r.status === 201) {
      store.setItem(tokenKey(), r.data.token);
      return follow(r.data.token, r.data);
    }
    if (r.status === 410) return finish("sold_out_title", "sold_out_text");
    if (r.status === 404) return finish(null, "no_concert");
    if (r.status === 401 || r.status === 403) { store.removeItem("fan.jwt"); return start(); }
    await waitOut(r);
  }
}

async function waitOut(r) {
  const s = Math.max(1, r.retryAfter || 2);
  $("connection").textContent = r.status >= 500 || r.status === 429 ? t("busy", s) : t("error");
  await sleep(s * 1000);
}

async function follow(token, first) {
  state.token = token;
  render(first);
  while (state.view && state.view.status === "waiting") {
    $("connection").textContent = t("live");
    let ended = null;
    try {
      ended = await stream(`/v1/queue/tokens/${token}/events`, {}, (name, data) => {
        if (name === "status") render(data);
        else if (name === "gone") gone(data.error);
      });
    } catch (_) { ended = null; }
    if (!state.view || state.view.status !== "waiting") return;
    if (ended && ended.status >= 400 && ended.status < 500) return gone(ended.data && ended.data.error);
    // The stream was cut: poll as told, then try the stream again.
    $("connection").textContent = t("reconnecting");
    const r = await api("GET", `/v1/queue/tokens/${token}`);
    if (r.status === 200) render(r.data);
    else if (r.status >= 400 && r.status < 500) return gone(r.data && r.data.error);
    const wait = r.status === 200 ? r.data.poll_after_ms || 2000 : Math.max(1, r.retryAfter) * 1000;
    await sleep(Math.min(wait, 5000));
  }
}

function render(view) {
  state.view = view;
  if (view.status === "sold_out") return finish("sold_out_title", "sold_out_text");
  if (view.status === "active") return showSeats();
  show("waiting");
  const firstKey = tokenKey() + ".first";
  const first = Number(store.getItem(firstKey) || 0) || view.position;
  store.setItem(firstKey, String(first));
  // Progress by places, not by time: it never runs ahead when the pace changes.
  const pct = first > 1 ? Math.round(100 * (first - view.position) / (first - 1)) : 0;
  $("position").textContent = t("position", view.position);
  $("eta").textContent = view.eta_seconds ? t("eta", view.eta_seconds[0], view.eta_seconds[1])
                                          : t("eta_unknown");
  $("progress").setAttribute("aria-valuenow", String(pct));
  $("progress").firstElementChild.style.width = `${pct}%`;
  $("progress-label").textContent = t("progress", pct);
  $("sale-note").textContent = view.sale === "paused" ? t("paused") : "";
}

function gone(error) {
  store.removeItem(tokenKey());
  store.removeItem(tokenKey() + ".first");
  state.view = null;
  const reason = error && error.reason;
  if (error && error.code === "sold_out") return finish("sold_out_title", "sold_out_text");
  if (reason === "expired") return finish("turn_lost_title", "turn_lost_text", "enter_again");
  return finish("dropped_title", "dropped_text", "enter_again");
}

// --- seats ------------------------------------------------------------------------------------

async function showSeats() {
  show("seats");
  $("seat-error").textContent = "";
  clearInterval(state.turnTimer);
  const tick = () => {
    if (!state.view || !state.view.expires_at) return;
    const left = secondsUntil(state.view.expires_at);
    $("turn").textContent = left === 0 ? t("turn_over")
      : left <= 10 ? t("turn_soon", left) : t("turn", clock(state.view.expires_at), left);
    $("turn").className = left <= 10 ? "warn" : "";
  };
  tick();
  state.turnTimer = setInterval(tick, 1000);
  await loadSeats();
  clearInterval(state.seatTimer);
  state.seatTimer = setInterval(loadSeats, 2000);  // live: other fans' holds and sales appear
}

async function loadSeats() {
  const seats = [];
  let after = "0";
  while (after !== null) {
    const r = await api("GET", `/v1/concerts/${state.concert}/seats?limit=500&after=${after}`);
    if (r.status !== 200) return;
    seats.push(...r.data.seats);
    after = r.data.next_after;
  }
  const grid = $("seat-grid");
  const focused = document.activeElement && document.activeElement.dataset.seat;
  grid.replaceChildren(...seats.map((s) => {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = s.seat_id;
    b.className = s.status;
    b.dataset.seat = s.seat_id;
    b.setAttribute("aria-label", t("seat_label", s.seat_id, s.status));
    if (s.status !== "available") b.setAttribute("aria-disabled", "true");
    b.addEventListener("click", () => s.status === "available" && pick(s.seat_id));
    return b;
  }));
  if (focused) { const again = grid.querySelector(`[data-seat="${focused}"]`); if (again) again.focus(); }
}

function stopSeatTimers() { clearInterval(state.seatTimer); clearInterval(state.turnTimer); }

async function pick(seatId) {
  stopSeatTimers();
  show("hold");
  $("hold-status").textContent = t("holding", seatId);
  $("hold-countdown").textContent = "";
  $("pay").hidden = true;
  for (;;) {
    const r = await api("POST", "/v1/reservations", {
      body: { concert_id: state.concert, seat_id: seatId, user_id: state.user },
      headers: { "Queue-Token": state.token } });
    if (r.status === 202 || r.status === 200 || r.status === 201) {
      store.setItem(tokenKey() + ".reservation", r.data.reservation_id);
      return followReservation(r.data.reservation_id);
    }
    if (r.status >= 400 && r.status < 500) {  // told why: no retry helps (e.g. the hold limit)
      const code = r.data && r.data.error && r.data.error.code;
      if (code === "token_expired" || code === "token_not_active") return gone(r.data.error);
      $("seat-error").textContent = (r.data && r.data.error && r.data.error.message) || t("error");
      return showSeats();
    }
    await waitOut(r);
  }
}

async function followReservation(rid) {
  const headers = { "Queue-Token": state.token };
  let final = false;
  while (!final) {
    try {
      await stream(`/v1/reservations/${rid}/events`, headers, (name, data) => {
        if (name === "status") final = renderReservation(data);
      });
    } catch (_) { /* cut: fall back to a long-poll below */ }
    if (final) return;
    const seen = state.reservation ? `&seen=${state.reservation.status}` : "";
    const r = await api("GET", `/v1/reservations/${rid}?wait_ms=10000${seen}`, { headers });
    if (r.status === 200) final = renderReservation(r.data);
    else await waitOut(r);
  }
}

function renderReservation(r) {
  state.reservation = r;
  clearInterval(state.holdTimer);
  if (r.status === "pending") return false;
  if (r.status === "held") {
    show("hold");
    $("hold-status").textContent = t("held_until", r.seat_id, clock(r.hold_expires_at));
    $("pay").hidden = false;
    const tick = () => { $("hold-countdown").textContent = t("hold_left", secondsUntil(r.hold_expires_at)); };
    tick();
    state.holdTimer = setInterval(tick, 1000);
    if (!$("pay").dataset.focused) { $("pay").focus(); $("pay").dataset.focused = "1"; }
    return false;
  }
  store.removeItem(tokenKey() + ".reservation");
  $("pay").dataset.focused = "";
  const id = r.seat_id;
  if (r.status === "confirmed") {
    finish("confirmed_title", "confirmed_text");
    $("ticket").hidden = false;
    $("ticket").querySelector(".ticket-seat").textContent = t("seat", id);
    $("ticket").querySelector(".ticket-concert").textContent = t("ticket_concert", r.concert_id);
    $("ticket").querySelector(".ticket-ref").textContent = t("ticket_ref", r.reservation_id);
    return true;
  }
  const outcome = { rejected: ["rejected_title", "rejected_text"], expired: ["expired_title", "expired_text"],
                    payment_failed: ["failed_title", "failed_text"],
                    refunded: ["refunded_title", "refunded_text"] }[r.status] || ["error", "error"];
  finish(outcome[0], outcome[1], r.status === "rejected" ? "pick_again" : null, id);
  return true;
}

async function pay() {
  const r = state.reservation;
  $("pay").hidden = true;
  $("hold-status").textContent = t("paying");
  for (;;) {
    const answer = await api("POST", `/v1/reservations/${r.reservation_id}/payment`, {
      body: { user_id: state.user }, headers: { "Queue-Token": state.token } });
    if (answer.status === 202) return;  // the outcome arrives on the reservation's stream
    if (answer.status < 500 && answer.status !== 429) {
      $("pay-error").textContent = (answer.data && answer.data.error && answer.data.error.message) || t("error");
      $("pay").hidden = false;
      return;
    }
    await waitOut(answer);
  }
}

// --- endings ----------------------------------------------------------------------------------

function finish(titleKey, textKey, againKey, seatId) {
  stopSeatTimers();
  clearInterval(state.holdTimer);
  show("result");
  $("ticket").hidden = true;
  $("result-title").textContent = titleKey ? t(titleKey) : "";
  $("result-text").textContent = t(textKey, seatId);
  const again = $("again");
  again.hidden = !againKey;
  if (againKey) {
    again.textContent = t(againKey);
    again.onclick = againKey === "pick_again" ? () => { state.reservation = null; showSeats(); }
                                              : () => { state.reservation = null; enterLine(); };
  }
  $("result-title").focus();
  announce($("result-title").textContent);
}

// --- start ------------------------------------------------------------------------------------

function start() {
  if (!readIdentity()) { show("signin"); $("fan-name").focus(); return; }
  state.concert = new URLSearchParams(location.search).get("concert");
  if (!state.concert) { show("choose"); return; }
  const rid = store.getItem(tokenKey() + ".reservation");
  const token = store.getItem(tokenKey());
  if (rid && token) { state.token = token; show("hold"); return followReservation(rid); }
  enterLine();
}

document.addEventListener("DOMContentLoaded", () => {
  for (const b of document.querySelectorAll("[data-lang]"))
    b.addEventListener("click", () => setLanguage(b.dataset.lang, true));
  setLanguage(store.getItem("fan.lang") || document.documentElement.lang, false);
  $("signin-form").addEventListener("submit", signIn);
  $("choose-form").addEventListener("submit", (e) => {
    e.preventDefault();
    location.search = `?concert=${encodeURIComponent($("concert-id").value.trim())}`;
  });
  $("pay").addEventListener("click", pay);
  start();
});
