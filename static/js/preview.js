// Live preview of letters: the server renders the Markdown and sanitises it (campaign/rendering.py);
// this script only sends the text and shows what comes back, with what the sanitiser removed.
// Without it, the form's "Preview" button does the same with a full page load.
"use strict";

(function () {
  const DELAY_MS = 400;
  const PLACEHOLDER = "The text appears here as readers will see it.";

  function showRemoved(container, removed) {
    container.replaceChildren();
    if (!removed.length) return;
    const notice = document.createElement("p");
    notice.className = "flash flash-warning";
    const title = document.createElement("strong");
    title.textContent = "Removed from the preview:";
    // textContent: the names ("<script> element") are shown as text, never parsed as markup.
    notice.append(title, " " + removed.join(", ") +
      ". Scripts, styles, event handlers and unsafe links never reach a page, an email or a PDF.");
    container.append(notice);
  }

  function showPlaceholder(target) {
    const p = document.createElement("p");
    p.className = "muted";
    p.textContent = PLACEHOLDER;
    target.replaceChildren(p);
  }

  function wire(source) {
    const target = document.getElementById(source.dataset.previewTarget);
    const warning = document.getElementById(source.dataset.previewWarning);
    if (!target || !warning) return;
    const token = source.form && source.form.querySelector('input[name="csrf_token"]');
    let timer = null;
    let inFlight = null;

    async function update() {
      if (inFlight) inFlight.abort();
      inFlight = new AbortController();
      const headers = {"Accept": "application/json"};
      if (token) headers["X-CSRFToken"] = token.value;
      target.setAttribute("aria-busy", "true");
      try {
        const response = await fetch(source.dataset.previewUrl, {
          method: "POST",
          headers: headers,
          body: new URLSearchParams({markdown: source.value}),
          credentials: "same-origin",
          signal: inFlight.signal,
        });
        if (!response.ok) throw new Error("preview failed: " + response.status);
        const data = await response.json();
        // Sanitised by the server against the same allowlist as the published letter.
        if (data.html) target.innerHTML = data.html; else showPlaceholder(target);
        showRemoved(warning, data.removed || []);
      } catch (error) {
        if (error.name === "AbortError") return;
        const p = document.createElement("p");
        p.className = "flash flash-error";
        p.textContent = "The preview could not be updated. Use the Preview button instead.";
        warning.replaceChildren(p);
      } finally {
        target.removeAttribute("aria-busy");
      }
    }

    source.addEventListener("input", function () {
      window.clearTimeout(timer);
      timer = window.setTimeout(update, DELAY_MS);
    });

    // The original's language decides the preview's direction (Arabic reads right to left).
    const language = source.form && source.form.querySelector('select[name="language"]');
    if (language) {
      language.addEventListener("change", function () {
        target.lang = language.value;
        target.dir = language.value === "ar" ? "rtl" : "ltr";
      });
    }
  }

  document.querySelectorAll("textarea[data-preview-url]").forEach(wire);
})();
