// The key form: the key goes to sessionStorage (this tab only) and nowhere else.
import { setKey } from "../api.js";
import { h } from "../dom.js";

export function loginView(onSignedIn, message) {
  const input = h("input", {
    type: "password",
    id: "api-key",
    name: "api-key",
    autocomplete: "off",
    required: true,
    placeholder: "ipk_…",
  });
  const form = h(
    "form",
    { class: "card login", id: "login" },
    h("h1", null, "InfoPrune dashboard"),
    h("p", null, "Enter your tenant's API key. It is kept in this browser tab only and sent only in request headers."),
    h("label", { for: "api-key" }, "API key"),
    input,
    h("button", { type: "submit" }, "Open"),
    message ? h("p", { class: "error", role: "alert" }, message) : null,
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    setKey(input.value.trim());
    onSignedIn();
  });
  return form;
}
