// Staff sign-in shared by the agent console and the auditor page. The hub sets an HttpOnly
// session cookie; the page never stores the token itself.
import { $, api, clearNotice, h, showNotice } from "./common.js";

const ROLE_HOME = { agent: "/agent", auditor: "/audit", admin: "/admin", lead: "/lead" };

const MESSAGES = {
  bad_credentials: "Wrong username or password.",
  login_throttled: "Too many failed attempts. Wait a moment and try again.",
  login_busy: "Many people are signing in right now. Try again in a moment.",
  otp_required: "Enter the 6-digit code from your authenticator app.",
  bad_otp: "That code is wrong or was already used. Enter the current code.",
  totp_enrolment_required: "This account needs a second factor before it can sign in. Ask an administrator to enrol it.",
  session_revoked: "Your session was ended. Please sign in again.",
  account_disabled: "This account is disabled.",
};

/** The one-time-code field, added to the form when the hub asks for a second factor. */
function otpField(form) {
  let input = $("#login-otp", form);
  if (!input) {
    input = h("input", { id: "login-otp", "data-testid": "login-otp", name: "otp", type: "text",
      inputmode: "numeric", autocomplete: "one-time-code", pattern: "[0-9]{6}", maxlength: "6" });
    const field = h("div", { class: "field" }, h("label", { for: "login-otp" }, "One-time code"), input);
    $("#login-submit", form).before(field);
  }
  return input;
}

/**
 * Resolve with the signed-in user ({username, role, display_name, skills}) once a user with one
 * of `roles` is signed in: the current session if there is one, else after the login form.
 */
export function signIn(roles, { reason = "" } = {}) {
  const view = $("#login-view");
  const form = $("#login-form");
  const notice = $("#login-notice");
  const submit = $("#login-submit");
  return new Promise((resolve) => {
    const showForm = (msg) => {
      document.body.dataset.signedIn = "false";
      for (const el of document.querySelectorAll("[data-requires-login]")) el.hidden = true;
      view.hidden = false;
      if (msg) showNotice(notice, { kind: msg.kind || "warn", text: msg.text, code: msg.code });
      else clearNotice(notice);
      $("#login-username").focus();
    };
    const done = (user) => {
      form.removeEventListener("submit", onSubmit);
      view.hidden = true;
      clearNotice(notice);
      document.body.dataset.signedIn = "true";
      for (const el of document.querySelectorAll("[data-requires-login]")) el.hidden = false;
      resolve(user);
    };
    const wrongRole = (user) => {
      const home = ROLE_HOME[user.role];
      return { kind: "error", code: "wrong_role", text: `${user.display_name || user.username} ` +
        `is signed in as ${user.role}, which cannot use this page.` +
        (home ? ` Use ${location.origin}${home} instead, or sign in with another account.` : "") };
    };
    async function onSubmit(ev) {
      ev.preventDefault();
      submit.disabled = true;
      const otp = $("#login-otp", form);
      try {
        const { user } = await api("/api/login", { method: "POST", body: {
          username: $("#login-username").value.trim(), password: $("#login-password").value,
          ...(otp && otp.value.trim() ? { otp: otp.value.trim() } : {}) } });
        $("#login-password").value = "";
        if (otp) otp.closest(".field").remove();
        if (!roles.includes(user.role)) {
          await api("/api/logout", { method: "POST" }).catch(() => {});
          showForm(wrongRole(user));
        } else done(user);
      } catch (e) {
        showNotice(notice, { kind: e.code === "otp_required" ? "info" : "error",
          text: MESSAGES[e.code] || e.message, code: e.code });
        if (e.code === "otp_required" || e.code === "bad_otp") {
          const input = otpField(form);
          input.value = "";
          input.focus();
        } else $("#login-password").select();
      } finally {
        submit.disabled = false;
      }
    }
    form.addEventListener("submit", onSubmit);
    api("/api/me").then((user) => {
      if (roles.includes(user.role) && !reason) done(user);
      else showForm(roles.includes(user.role) ? { text: reason } : wrongRole(user));
    }).catch(() => showForm(reason ? { text: reason } : null));
  });
}

export async function signOut() {
  await api("/api/logout", { method: "POST" }).catch(() => {});
  location.reload();
}
