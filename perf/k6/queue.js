// Queue-service load phases for k6; run by `python -m perf.bench_queue` (see that module).
//
// Manual run: k6 run -e BASE_URL=http://127.0.0.1:8000 -e OP=poll -e MODE=saturate perf/k6/queue.js
//
// Environment (__ENV):
//   BASE_URL      service root, e.g. http://127.0.0.1:8000 (required)
//   OP            issue | poll | validate | hello | flow               (default poll)
//                 flow: enter a new user, poll its token, validate an active pool token
//   MODE          saturate (constant-vus) | fixed (constant-arrival-rate) |
//                 ramp (ramping-arrival-rate RATE -> RATE_TO over DURATION_S) (default saturate)
//   RATE_TO       final offered rate of a ramp                         (default 4 x RATE)
//   DURATION_S    seconds of measured load                            (default 10)
//   WARMUP_S      seconds of the same load before it, not measured     (default 2)
//   VUS           virtual users for saturate                          (default 64)
//   RATE          offered requests per second for fixed               (default 1000)
//   FIXED_VUS     pre-allocated VUs for fixed (may grow to 8x)         (default 50)
//   CONCERT_ID    concert to queue for (fresh per phase)              (default bench)
//   POOL_SIZE     tokens created in setup for poll / validate         (default 1000)
//   SUMMARY_PATH  where handleSummary writes the JSON summary         (default summary.json)
//
// Only requests of the `measure` scenario count: setup's and the warm-up's traffic (new
// connections, first iterations decoding the token pool) are excluded through the
// `{scenario:measure}` sub-metrics that the thresholds below make k6 report. The warm-up's VUs
// are reused by `measure`, which starts when the warm-up ends.

import http from 'k6/http';
import crypto from 'k6/crypto';
import encoding from 'k6/encoding';
import exec from 'k6/execution';
import { sleep } from 'k6';
import { Gauge } from 'k6/metrics';

const BASE_URL = __ENV.BASE_URL;
const OP = __ENV.OP || 'poll';
const MODE = __ENV.MODE || 'saturate';
const DURATION_S = Number(__ENV.DURATION_S || 10);
const WARMUP_S = Number(__ENV.WARMUP_S || 2);
const VUS = Number(__ENV.VUS || 64);
const RATE = Number(__ENV.RATE || 1000);
const FIXED_VUS = Number(__ENV.FIXED_VUS || 50);
const RATE_TO = Number(__ENV.RATE_TO || RATE * 4);
const CONCERT_ID = __ENV.CONCERT_ID || 'bench';
const POOL_SIZE = Number(__ENV.POOL_SIZE || 1000);
const SUMMARY_PATH = __ENV.SUMMARY_PATH || 'summary.json';

if (!BASE_URL) {
  throw new Error('BASE_URL is required');
}
if (!['issue', 'poll', 'validate', 'hello', 'flow'].includes(OP)) {
  throw new Error(`unknown OP ${OP}`);
}

const TOKENS = `${BASE_URL}/v1/queue/tokens`;
const JSON_HEADERS = { 'Content-Type': 'application/json' };
// The ticket site's login key (HS256): each fan entering the queue proves who it is.
const IDENTITY_SECRET = __ENV.IDENTITY_SECRET;
const JWT_HEADER = encoding.b64encode(JSON.stringify({ alg: 'HS256', typ: 'JWT' }), 'rawurl');

// The headers of a fan logged in as `user`: a JWT as `shared.identity.mint` makes it.
function login(user) {
  const now = Math.floor(Date.now() / 1000);
  const claims = { sub: user, aud: 'concert-queue', iat: now, exp: now + 3600 };
  const signing = `${JWT_HEADER}.${encoding.b64encode(JSON.stringify(claims), 'rawurl')}`;
  const signature = crypto.hmac('sha256', IDENTITY_SECRET, signing, 'binary');
  return { ...JSON_HEADERS, Authorization: `Bearer ${signing}.${encoding.b64encode(signature, 'rawurl')}` };
}
const SETUP_BATCH = 100;

// The measured window's ends, as Unix ms: k6's own `rate`s divide by the whole run, setup included.
const measureStart = new Gauge('bench_measure_start_ms');
const measureEnd = new Gauge('bench_measure_end_ms');

// What counts as success for each operation; anything else (and status 0) is an error.
const EXPECTED = { issue: [201], flow: [200, 201] };
http.setResponseCallback(http.expectedStatuses(...(EXPECTED[OP] || [200])));

function scenario(durationS, startS, gracefulStop) {
  const timing = { duration: `${durationS}s`, startTime: `${startS}s`, gracefulStop };
  if (MODE === 'fixed') {
    return {
      executor: 'constant-arrival-rate',
      rate: RATE,
      timeUnit: '1s',
      preAllocatedVUs: FIXED_VUS,
      maxVUs: FIXED_VUS * 8,
      ...timing,
    };
  }
  if (MODE === 'ramp') {
    return {
      executor: 'ramping-arrival-rate',
      startRate: RATE,
      timeUnit: '1s',
      stages: [{ target: RATE_TO, duration: `${durationS}s` }],
      preAllocatedVUs: FIXED_VUS,
      maxVUs: FIXED_VUS * 8,
      startTime: timing.startTime,
      gracefulStop,
    };
  }
  if (MODE === 'saturate') {
    return { executor: 'constant-vus', vus: VUS, ...timing };
  }
  throw new Error(`unknown MODE ${MODE}`);
}

const scenarios = { measure: scenario(DURATION_S, WARMUP_S, '5s') };
if (WARMUP_S > 0) {
  scenarios.warmup = scenario(WARMUP_S, 0, '0s');
}

export const options = {
  scenarios,
  discardResponseBodies: true, // the load loop only needs statuses; setup asks for bodies
  setupTimeout: '30s',
  summaryTrendStats: ['avg', 'min', 'med', 'p(50)', 'p(95)', 'p(99)', 'max'],
  thresholds: {
    // Always-true thresholds: they only make the summary carry the scenario's sub-metrics.
    'http_reqs{scenario:measure}': ['count>=0'],
    'http_req_duration{scenario:measure}': ['max>=0'],
    'http_req_failed{scenario:measure}': ['rate>=0'],
    'dropped_iterations{scenario:measure}': ['count>=0'],
  },
};

function createTokens(n) {
  const tokens = [];
  for (let start = 0; start < n; start += SETUP_BATCH) {
    const batch = [];
    for (let i = start; i < Math.min(n, start + SETUP_BATCH); i++) {
      const body = JSON.stringify({ concert_id: CONCERT_ID, user_id: `pool-${i}` });
      batch.push({
        method: 'POST',
        url: TOKENS,
        body,
        params: {
          headers: login(`pool-${i}`),
          responseType: 'text',
          tags: { name: 'setup-enter' },
        },
      });
    }
    for (const res of http.batch(batch)) {
      if (res.status !== 201 && res.status !== 200) {
        throw new Error(`setup: entering the queue gave ${res.status}: ${res.body}`);
      }
      const view = res.json();
      tokens.push({ token: view.token, user_id: view.user_id, status: view.status });
    }
  }
  return tokens;
}

function waitUntilActive(pool, timeoutS) {
  const deadline = Date.now() + timeoutS * 1000;
  let pending = pool.filter((t) => t.status !== 'active');
  while (pending.length > 0) {
    if (Date.now() > deadline) {
      throw new Error(`setup: ${pending.length} tokens still not active after ${timeoutS}s`);
    }
    sleep(0.2);
    const still = [];
    for (let start = 0; start < pending.length; start += SETUP_BATCH) {
      const chunk = pending.slice(start, start + SETUP_BATCH);
      const responses = http.batch(
        chunk.map((t) => ({
          method: 'GET',
          url: `${TOKENS}/${t.token}`,
          params: { responseType: 'text', tags: { name: 'setup-poll' } },
        })),
      );
      responses.forEach((res, i) => {
        if (res.status !== 200 || res.json().status !== 'active') {
          still.push(chunk[i]);
        }
      });
    }
    pending = still;
  }
}

export function setup() {
  let pool = [];
  if (OP === 'poll' || OP === 'validate' || OP === 'flow') {
    pool = createTokens(POOL_SIZE);
  }
  if (OP === 'validate' || OP === 'flow') {
    waitUntilActive(pool, 20);
  }
  // Scenarios start right after setup returns (`measure` WARMUP_S later): t0 is a fallback for
  // the measured window's start when no iteration recorded it.
  return { pool, t0: Date.now() };
}

const POLL = { tags: { name: 'poll' } };
const ISSUE = { headers: JSON_HEADERS, tags: { name: 'issue' } };
const VALIDATE = { headers: JSON_HEADERS, tags: { name: 'validate' } };
const HELLO = { tags: { name: 'hello' } };

export default function (data) {
  const n = exec.scenario.iterationInTest; // unique within the scenario
  if (n === 0 && exec.scenario.name === 'measure') {
    measureStart.add(exec.scenario.startTime);
  }
  if (OP === 'issue') {
    const user = `${exec.scenario.name}-${n}`;
    const body = JSON.stringify({ concert_id: CONCERT_ID, user_id: user });
    http.post(TOKENS, body, { ...ISSUE, headers: login(user) });
  } else if (OP === 'poll') {
    const t = data.pool[n % data.pool.length];
    http.get(`${TOKENS}/${t.token}`, POLL);
  } else if (OP === 'flow') {
    const user = `${exec.scenario.name}-${n}`;
    const res = http.post(TOKENS, JSON.stringify({ concert_id: CONCERT_ID, user_id: user }), {
      headers: login(user),
      responseType: 'text',
      tags: { name: 'issue' },
    });
    if (res.status === 201) {
      http.get(`${TOKENS}/${res.json().token}`, POLL);
    }
    const t = data.pool[n % data.pool.length];
    const body = JSON.stringify({ concert_id: CONCERT_ID, user_id: t.user_id });
    http.post(`${TOKENS}/${t.token}/validate`, body, VALIDATE);
  } else if (OP === 'validate') {
    const t = data.pool[n % data.pool.length];
    const body = JSON.stringify({ concert_id: CONCERT_ID, user_id: t.user_id });
    http.post(`${TOKENS}/${t.token}/validate`, body, VALIDATE);
  } else {
    http.get(`${BASE_URL}/hello`, HELLO);
  }
}

export function teardown() {
  measureEnd.add(Date.now()); // right after `measure` and its graceful stop end
}

function gauge(data, name, fallback) {
  const metric = data.metrics[name];
  return metric ? metric.values.value : fallback;
}

export function handleSummary(data) {
  // The measured window: from `measure`'s start to its end (including its graceful stop).
  const startMs = gauge(data, 'bench_measure_start_ms', data.setup_data.t0 + WARMUP_S * 1000);
  const endMs = gauge(data, 'bench_measure_end_ms', Date.now());
  const out = {
    bench: {
      op: OP,
      mode: MODE,
      duration_s: DURATION_S,
      warmup_s: WARMUP_S,
      rate: RATE,
      start_ms: startMs,
      end_ms: endMs,
      window_ms: endMs - startMs,
    },
    state: data.state,
    options: data.options,
    metrics: data.metrics,
  };
  return {
    [SUMMARY_PATH]: JSON.stringify(out, null, 1),
    stdout: `k6 ${OP}/${MODE}: summary written to ${SUMMARY_PATH}\n`,
  };
}
