/*
 * The login form, the only script served without the token. It asks for the API token, keeps
 * it in sessionStorage (only while the tab is open: never in a URL or a cookie), fetches the
 * console's modules with it and runs them through an import map of blob URLs.
 *
 * A classic script, not a module: the import map must be in place before the page loads any
 * module.
 */
"use strict";
{
  const KEY = "ebpfmon.token";
  const MESSAGE = "ebpfmon.loginMessage";
  const nonce = document.currentScript.nonce;
  const form = document.getElementById("login");
  const input = document.getElementById("token");
  const message = document.getElementById("login-message");

  /** Forgets the token and shows the login form again, with `text` when given. */
  const logout = (text) => {
    sessionStorage.removeItem(KEY);
    if (text) sessionStorage.setItem(MESSAGE, text);
    location.reload();
  };

  const showForm = (text) => {
    message.textContent = text ?? "";
    form.hidden = false;
    input.value = "";
    input.focus();
  };

  const open = async (token) => {
    let response;
    try {
      response = await fetch("console/app.json", {
        headers: { Authorization: `Bearer ${token}` },
        cache: "no-store",
      });
    } catch (error) {
      return showForm(`The IDS cannot be reached: ${error.message}`);
    }
    if (response.status === 401) {
      sessionStorage.removeItem(KEY);
      return showForm("The API refused this token");
    }
    if (!response.ok) return showForm(`The console cannot be loaded: HTTP ${response.status}`);
    const bundle = await response.json();
    sessionStorage.setItem(KEY, token);
    const imports = {};
    for (const [name, source] of Object.entries(bundle.modules)) {
      const blob = new Blob([source], { type: "text/javascript" });
      imports[`@console/${name}`] = URL.createObjectURL(blob);
    }
    const map = document.createElement("script");
    map.type = "importmap";
    map.nonce = nonce;
    map.textContent = JSON.stringify({ imports });
    document.head.append(map);
    const style = document.createElement("style");
    style.nonce = nonce;
    style.textContent = bundle.style;
    document.head.append(style);
    form.hidden = true;
    message.textContent = "";
    const app = await import("@console/app.js");
    app.start({ token, root: document.getElementById("app"), logout });
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const token = input.value.trim();
    if (token) open(token);
  });

  const said = sessionStorage.getItem(MESSAGE) ?? undefined;
  sessionStorage.removeItem(MESSAGE);
  const kept = sessionStorage.getItem(KEY);
  if (kept && !said) open(kept);
  else showForm(said);
}
