/*
 * The demo page's chapter menu: on narrow screens (the phone layout of demo.css) the chapter
 * list folds behind the "Chapters" button, so the chapter itself starts on the first screen.
 * Loaded in <head> without defer: the `js` class is set before the first paint, and without
 * this script the list simply stays open.
 */
(() => {
  "use strict";
  document.documentElement.classList.add("js");

  function wire() {
    const button = document.querySelector(".menu-button");
    const nav = button && document.getElementById(button.getAttribute("aria-controls"));
    if (!nav) return;
    const setOpen = (open) => {
      button.setAttribute("aria-expanded", String(open));
      nav.classList.toggle("open", open);
    };
    button.addEventListener("click", () => setOpen(button.getAttribute("aria-expanded") !== "true"));
    // Escape inside the open list folds it and gives focus back to its button.
    nav.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && button.getAttribute("aria-expanded") === "true") {
        setOpen(false);
        button.focus();
      }
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", wire);
  else wire();
})();
