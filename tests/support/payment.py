"""An in-memory payment provider for tests that need a gateway without Redis. It passes the same
contract as the simulator (tests/integration/test_gateway_contract.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from services.payment.gateway import Outcome, PaymentGateway


@dataclass
class Ledger:
    """The provider's side: the first outcome per idempotency key, and its statement."""

    charges: dict[str, Outcome] = field(default_factory=dict)
    refunds: dict[str, Outcome] = field(default_factory=dict)


@dataclass
class InMemoryGateway(PaymentGateway):
    ledger: Ledger = field(default_factory=Ledger)
    decline_all: bool = False  # every new charge is declined (card_declined)

    async def charge(self, idempotency_key: str, amount: int) -> Outcome:
        if idempotency_key not in self.ledger.charges:
            ok = not self.decline_all
            self.ledger.charges[idempotency_key] = Outcome(ok, "" if ok else "card_declined")
        return self.ledger.charges[idempotency_key]

    async def refund(self, idempotency_key: str, amount: int) -> Outcome:
        return self.ledger.refunds.setdefault(idempotency_key, Outcome(True))
