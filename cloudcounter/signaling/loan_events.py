"""The agent's car-loan events (``credit:*``), mixed into the ``/agent`` namespace.

Every event names a call; :class:`cloudcounter.hub.loans.HubLoans` answers only for a
car-loan call of the agent who sends it (else ``unknown_call``): an agent never reads the
application of a customer who is not in their call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudcounter.signaling.loan_schemas import CallRefLoan, CreditAnswer, CreditOutcome

if TYPE_CHECKING:
    from cloudcounter.signaling.namespaces import Conn


class LoanAgentEvents:
    ctx: Any

    def uid(self, conn: "Conn") -> int:
        raise NotImplementedError

    async def ev_credit_lookup(self, sid: str, conn: "Conn", msg: CallRefLoan
                               ) -> dict[str, Any]:
        return await self.ctx.loans.lookup(msg.call_id, self.uid(conn))  # type: ignore[no-any-return]

    async def ev_credit_view(self, sid: str, conn: "Conn", msg: CallRefLoan) -> dict[str, Any]:
        return await self.ctx.loans.view(msg.call_id, self.uid(conn))  # type: ignore[no-any-return]

    async def ev_credit_answer(self, sid: str, conn: "Conn", msg: CreditAnswer
                               ) -> dict[str, Any]:
        return await self.ctx.loans.answer(  # type: ignore[no-any-return]
            msg.call_id, self.uid(conn), msg.question, msg.answer)

    async def ev_credit_outcome(self, sid: str, conn: "Conn", msg: CreditOutcome
                                ) -> dict[str, Any]:
        return await self.ctx.loans.outcome(  # type: ignore[no-any-return]
            msg.call_id, self.uid(conn), msg.outcome, list(msg.reasons), msg.application_id)
