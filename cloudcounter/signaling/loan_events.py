"""The agent's car-loan events (``credit:*``), mixed into the ``/agent`` namespace, and
the customer's appointment events (``appointment:*``), mixed into ``/customer``.

Every event names a call; :class:`cloudcounter.hub.loans.HubLoans` answers only for a
car-loan call of the agent who sends it (else ``unknown_call``): an agent never reads the
application of a customer who is not in their call."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cloudcounter.signaling.loan_schemas import (
    AppointmentBook, AppointmentMove, AppointmentRef, CallRefLoan, CreditAnswer, CreditOutcome,
    SlotsQuery,
)

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


class AppointmentCustomerEvents:
    """The customer's appointment events (``appointment:*``), mixed into ``/customer``.
    The customer is the token's: nobody books, moves or cancels for another customer."""

    ctx: Any

    @staticmethod
    def _cid(conn: "Conn") -> str:
        return conn.ident.customer_id  # type: ignore[union-attr,no-any-return]

    async def ev_appointment_slots(self, sid: str, conn: "Conn", msg: SlotsQuery
                                   ) -> dict[str, Any]:
        return await self.ctx.appointments.slots(msg.from_day, msg.days)  # type: ignore[no-any-return]

    async def ev_appointment_list(self, sid: str, conn: "Conn", msg: Any) -> dict[str, Any]:
        return await self.ctx.appointments.mine(self._cid(conn))  # type: ignore[no-any-return]

    async def ev_appointment_book(self, sid: str, conn: "Conn", msg: AppointmentBook
                                  ) -> dict[str, Any]:
        return await self.ctx.appointments.book_slot(  # type: ignore[no-any-return]
            self._cid(conn), msg.starts_at)

    async def ev_appointment_move(self, sid: str, conn: "Conn", msg: AppointmentMove
                                  ) -> dict[str, Any]:
        return await self.ctx.appointments.move(  # type: ignore[no-any-return]
            self._cid(conn), msg.appointment_id, msg.starts_at)

    async def ev_appointment_cancel(self, sid: str, conn: "Conn", msg: AppointmentRef
                                    ) -> dict[str, Any]:
        return await self.ctx.appointments.cancel(  # type: ignore[no-any-return]
            self._cid(conn), msg.appointment_id)
