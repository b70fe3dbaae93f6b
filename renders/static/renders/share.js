/* Print on the share page: tell the server, then print the embedded document (or the page). */
(function () {
  "use strict";
  var actions = document.querySelector("[data-print-url]");
  var button = document.getElementById("print-button");
  var viewer = document.getElementById("document-viewer");
  if (!actions || !button || !viewer) {
    return;
  }

  function printDocument() {
    try {
      viewer.contentWindow.focus();
      viewer.contentWindow.print();
    } catch (error) {
      window.print();
    }
  }

  button.hidden = false;
  button.addEventListener("click", function () {
    button.disabled = true;
    fetch(actions.getAttribute("data-print-url"), {
      method: "POST",
      credentials: "omit",
      cache: "no-store",
      keepalive: true
    })
      .catch(function () { /* printing must not depend on the count */ })
      .then(function () {
        button.disabled = false;
        printDocument();
      });
  });
})();
