"""Demo applications of the reference credit service, for the demo customers
(``cloudcounter demo seed``): what the agent's credit panel shows in the demo."""

from __future__ import annotations

from typing import Any


def _app(app_id: str, customer_id: str, name: str, employer: str, income: float,
         make: str, model: str, price: float, down: float, term: int, dealer: str,
         score: str, debts: float, overdue: int = 0, enquiries: int = 1,
         co: dict[str, Any] | None = None, created: str = "2026-11-20T09:30:00+00:00"
         ) -> dict[str, Any]:
    return {
        "id": app_id, "customer_id": customer_id, "status": "awaiting_interview",
        "product": "car_loan", "currency": "EUR", "created_at": created,
        "loan_amount": round(price - down, 2), "price": price, "down_payment": down,
        "term_months": term,
        "applicant": {"name": name, "employer": employer, "monthly_income": income,
                      "employment_since": "2019-03"},
        "co_applicant": co,
        "vehicle": {"make": make, "model": model, "year": 2026, "condition": "new",
                    "vin": "WVWZZZ" + app_id[-4:] + "0000001"},
        "dealer": {"name": dealer, "dealer_id": "DLR-" + app_id[-3:], "city": "Springfield"},
        "credit_report": {"score_band": score, "existing_debts": debts,
                          "monthly_debt_payments": round(debts / 36, 2),
                          "overdue_last_24m": overdue, "enquiries_last_6m": enquiries},
    }


DEMO_APPLICATIONS: list[dict[str, Any]] = [
    _app("APP-2026-1138", "cus_demo_eileen", "Eileen Collins", "Orbital Logistics GmbH", 5200,
         "Volkswagen", "ID.4", 40000, 8000, 60, "Northwind Motors Ltd", "A", 4000),
    _app("APP-2026-1201", "cus_demo_barack", "Barack Obama", "Lakeshore University", 7400,
         "Toyota", "RAV4 Hybrid", 38500, 10000, 48, "Northwind Motors Ltd", "A", 0,
         co={"name": "Michelle Obama", "employer": "Lakeshore Hospital",
             "monthly_income": 6100}),
    _app("APP-2026-1219", "cus_demo_joe", "Joseph Biden", "Harbour Trading Co", 6800,
         "Ford", "Mustang Mach-E", 52000, 5000, 72, "Harbour Auto Sales", "C", 21000,
         overdue=2, enquiries=5),
    _app("APP-2026-1240", "cus_demo_grace", "Grace Hopper", "Navy Computing Lab", 6400,
         "Skoda", "Enyaq", 44000, 12000, 60, "Northwind Motors Ltd", "B", 6500),
    _app("APP-2026-1266", "cus_demo_morgan", "Morgan Reyes", "Reyes Import Export", 9800,
         "BMW", "X5", 82000, 2000, 84, "Prestige Cars & Finance", "D", 48000, overdue=4,
         enquiries=9),
]


DEMO_ROSTER = [("bob", 8 * 60, 20 * 60), ("carol", 9 * 60, 18 * 60)]


async def seed_roster(sm: Any, days: int = 14) -> list[str]:
    """Roster the demo loan agents (bob, carol) for the coming days where nobody is yet
    (``cloudcounter demo seed``): the demo's appointment slots."""
    from datetime import datetime, timedelta, timezone

    from cloudcounter.business.appointments import AppointmentBook

    book = AppointmentBook(sm)
    today = datetime.now(timezone.utc).date()
    have = {(r["username"], r["day"]) for r in await book.roster(today, days)}
    created = 0
    for d in range(days):
        day = today + timedelta(days=d)
        for username, start, end in DEMO_ROSTER:
            if (username, day.isoformat()) not in have:
                await book.set_shift(username, day, start, end)
                created += 1
    return [f"roster: {created} shifts of bob and carol"] if created else []
