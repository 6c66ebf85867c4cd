// Staff sign-in shared by the agent console and the auditor page. The hub sets an HttpOnly
// session cookie; the page never stores the token itself.
import { $, api, clearNotice, showNotice } from "./common.js";

const ROLE_HOME = { agent: "/agent", auditor: "/audit", admin: "/audit", lead: "/lead" };

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
      try {
        const { user } = await api("/api/login", { method: "POST", body: {
          username: $("#login-username").value.trim(), password: $("#login-password").value } });
        $("#login-password").value = "";
        if (!roles.includes(user.role)) {
          await api("/api/logout", { method: "POST" }).catch(() => {});
          showForm(wrongRole(user));
        } else done(user);
      } catch (e) {
        const text = e.code === "bad_credentials" ? "Wrong username or password."
          : e.code === "login_throttled" ? "Too many failed attempts. Wait a few minutes and try again."
            : e.message;
        showNotice(notice, { kind: "error", text, code: e.code });
        $("#login-password").select();
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
