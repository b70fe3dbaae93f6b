/* The share page's reader: measures reading time per page and reports it; Print tells the server, then prints.
 *
 * A page is being read while at least half of it is in the viewport (or, for a page taller than the viewport,
 * while it fills at least half of the viewport) and the tab is visible. Time is split between the pages being
 * read at once. Reports go to the reader's `data-activity-url` every 15 s while there is something to report,
 * and with navigator.sendBeacon when the tab is hidden or the page goes away. No framework, no third party.
 */
(function () {
  "use strict";
  var reader = document.getElementById("reader");
  if (!reader) {
    return;
  }
  var REPORT_EVERY_MS = 15000;
  var visit = reader.getAttribute("data-visit");
  var activityUrl = reader.getAttribute("data-activity-url");
  var printUrl = reader.getAttribute("data-print-url");
  var status = document.getElementById("reader-status");
  var visible = {};   // page number -> whether it is being read (half in view)
  var pending = {};   // page number -> ms read since the last report
  var last = performance.now();

  function tabVisible() {
    return document.visibilityState === "visible";
  }

  function readingPages() {
    var pages = [];
    if (!tabVisible()) {
      return pages;
    }
    Object.keys(visible).forEach(function (page) {
      if (visible[page]) {
        pages.push(page);
      }
    });
    return pages;
  }

  /* Credit the time since the last call to the pages being read until now. */
  function flush() {
    var now = performance.now();
    var elapsed = now - last;
    last = now;
    var pages = readingPages();
    if (!pages.length || elapsed <= 0) {
      return;
    }
    var share = elapsed / pages.length;
    pages.forEach(function (page) {
      pending[page] = (pending[page] || 0) + share;
    });
  }

  /* The report body, and what it takes out of `pending` (whole milliseconds; the rest waits). */
  function takeReport() {
    flush();
    var entries = [];
    Object.keys(pending).forEach(function (page) {
      var ms = Math.floor(pending[page]);
      if (ms > 0) {
        entries.push({page: Number(page), ms: ms});
        pending[page] -= ms;
      }
    });
    if (!entries.length) {
      return null;
    }
    return {entries: entries, body: JSON.stringify({visit: visit, pages: entries})};
  }

  function giveBack(entries) {
    entries.forEach(function (entry) {
      pending[entry.page] = (pending[entry.page] || 0) + entry.ms;
    });
  }

  function sendNow() {
    var report = takeReport();
    if (!report) {
      return;
    }
    fetch(activityUrl, {
      method: "POST",
      body: report.body,
      headers: {"Content-Type": "application/json"},
      credentials: "same-origin",
      cache: "no-store",
      keepalive: true
    }).then(function (response) {
      if (response.status >= 500 || response.status === 429) {
        giveBack(report.entries);
      }
    }, function () {
      giveBack(report.entries);
    });
  }

  function sendOnLeave() {
    var report = takeReport();
    if (!report) {
      return;
    }
    if (!(navigator.sendBeacon && navigator.sendBeacon(activityUrl, report.body))) {
      giveBack(report.entries);
    }
  }

  function halfInView(entry) {
    if (!entry.isIntersecting) {
      return false;
    }
    var height = entry.boundingClientRect.height;
    var viewport = entry.rootBounds ? entry.rootBounds.height : window.innerHeight;
    return entry.intersectionRect.height >= 0.5 * Math.min(height, viewport) - 0.5;
  }

  var thresholds = [];
  for (var step = 0; step <= 20; step += 1) {
    thresholds.push(step / 20);
  }
  if ("IntersectionObserver" in window) {
    var observer = new IntersectionObserver(function (entries) {
      flush();
      entries.forEach(function (entry) {
        visible[entry.target.getAttribute("data-page")] = halfInView(entry);
      });
    }, {threshold: thresholds});
    Array.prototype.forEach.call(reader.querySelectorAll(".page[data-page]"), function (page) {
      observer.observe(page);
    });
  }

  document.addEventListener("visibilitychange", function () {
    if (tabVisible()) {
      last = performance.now();  // hidden time is nobody's reading
    } else {
      flush();
      sendOnLeave();
    }
  });
  window.addEventListener("pagehide", sendOnLeave);
  window.setInterval(sendNow, REPORT_EVERY_MS);

  /* Print: record it, then print the page images (every one loaded first; print CSS shows only them). */
  var printButton = document.getElementById("print-button");

  function allImagesLoaded() {
    var images = Array.prototype.slice.call(reader.querySelectorAll("img"));
    return Promise.all(images.map(function (image) {
      image.loading = "eager";
      if (image.complete && image.naturalWidth) {
        return Promise.resolve();
      }
      return new Promise(function (resolve) {
        image.addEventListener("load", resolve, {once: true});
        image.addEventListener("error", resolve, {once: true});
      });
    }));
  }

  if (printButton) {
    printButton.hidden = false;
    printButton.addEventListener("click", function () {
      printButton.disabled = true;
      if (status) {
        status.textContent = "Preparing the document for printing.";
      }
      var recorded = fetch(printUrl, {method: "POST", credentials: "same-origin", cache: "no-store", keepalive: true})
        .catch(function () { /* printing must not depend on the count */ });
      Promise.all([recorded, allImagesLoaded()]).then(function () {
        printButton.disabled = false;
        if (status) {
          status.textContent = "";
        }
        window.print();
      });
    });
  }
})();
