// Customer page: book, move or cancel a car-loan interview appointment (docs/protocol.md,
// "Appointments"). Free slots come from the hub (appointment:slots); the customer is the
// token's. Errors are shown beside the form and change nothing.
import { ask, clearNotice, h, showNotice } from "./common.js";

const ERRORS = {
  slot_full: "That time has just been taken. Choose another.",
  slot_in_past: "That time has passed. Choose another.",
  already_booked: "You already have an appointment: move or cancel it.",
  unknown_appointment: "That appointment no longer exists.",
};

function fmt(iso) {
  return new Date(iso).toLocaleString(undefined, { weekday: "short", day: "numeric",
    month: "short", hour: "2-digit", minute: "2-digit" });
}

export function createBookingUi(root) {
  const notice = h("div", { class: "booking-notice", "aria-live": "polite", hidden: true });
  const mine = h("div", { class: "booking-mine", "data-testid": "booking-mine" });
  const select = h("select", { "data-testid": "booking-slot", "aria-label": "Interview time" });
  const book = h("button", { type: "button", class: "btn btn-primary", "data-testid": "booking-book" }, "Book");
  root.append(
    h("h2", {}, "Book a car-loan interview"),
    h("p", { class: "muted small" }, "Choose a time: at that time, call from this page and you are served first."),
    mine, h("div", { class: "booking-form" }, select, book), notice);
  let socket = null;
  let current = null; // the booked appointment

  async function refresh() {
    if (!socket) return;
    try {
      const [slots, list] = await Promise.all([ask(socket, "appointment:slots", { days: 7 }),
        ask(socket, "appointment:list", {})]);
      current = (list.appointments || []).find((a) => a.state === "booked") || null;
      select.replaceChildren(...slots.slots.filter((s) => s.free > 0).map((s) =>
        h("option", { value: s.starts_at }, `${fmt(s.starts_at)} (${s.free} free)`)));
      if (!select.options.length) select.append(h("option", { value: "" }, "No free times this week"));
      book.textContent = current ? "Move here" : "Book";
      mine.replaceChildren(current ? h("p", { "data-testid": "booking-current", dataset: { id: current.appointment_id } },
        "Your interview: ", h("strong", {}, fmt(current.starts_at)), " ",
        h("button", { type: "button", class: "btn btn-sm", "data-testid": "booking-cancel", onclick: cancel }, "Cancel")) : "");
      root.hidden = false;
    } catch (e) {
      root.hidden = true;  // an older hub without appointments
    }
  }

  async function run(event, payload) {
    book.disabled = true;
    try {
      await ask(socket, event, payload);
      clearNotice(notice);
      showNotice(notice, { kind: "ok", text: event === "appointment:cancel" ? "Appointment cancelled." : "Appointment booked." });
    } catch (e) {
      showNotice(notice, { kind: "error", code: e.code, text: ERRORS[e.code] || e.message });
    } finally {
      book.disabled = false;
      await refresh();
    }
  }

  book.addEventListener("click", () => {
    if (!select.value) return;
    if (current) run("appointment:move", { appointment_id: current.appointment_id, starts_at: select.value });
    else run("appointment:book", { starts_at: select.value });
  });

  function cancel() {
    if (current) run("appointment:cancel", { appointment_id: current.appointment_id });
  }

  return {
    attach(s) {
      socket = s;
      s.on("connect", refresh);
      if (s.connected) refresh();
    },
  };
}
