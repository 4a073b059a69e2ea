// A copy's page, kept live: the server's events for this job (an EventSource on a /ui/ route,
// sent with the session cookie), each with the job as GET /v1/jobs/{id} shows it and the segment
// map as one letter per segment with the attempts of retried segments (xfer/web/segment_map.py).
// No library: about 110 lines.
"use strict";
(function () {
  const root = document.getElementById("job");
  const map = document.getElementById("segments");
  const names = { p: "pending", i: "in flight", w: "written", v: "verified", f: "failed" };
  const rates = [];

  function bytes(n) {
    if (n === null || n === undefined) return "-";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i += 1; }
    return (i ? n.toFixed(1) : String(n)) + " " + units[i];
  }
  function rate(r) { return r === null || r === undefined ? "-" : (r / 1e6).toFixed(2) + " MB/s"; }
  function seconds(s) {
    if (s === null || s === undefined) return "-";
    s = Math.round(s);
    return s >= 60 ? Math.floor(s / 60) + " min " + (s % 60) + " s" : s + " s";
  }
  function text(id, value) {
    const element = document.getElementById(id);
    if (element) element.textContent = value;
  }

  // cells: one letter per segment; tries: by index, the attempts of the segments that failed
  // one or are in flight, as the worker recorded them (xfer/web/segment_map.py)
  function drawMap(cells, tries) {
    while (map.children.length > cells.length) map.removeChild(map.lastChild);
    while (map.children.length < cells.length) map.appendChild(document.createElement("span"));
    const counts = {};
    for (let i = 0; i < cells.length; i += 1) {
      const cell = map.children[i], letter = cells[i], record = tries[String(i)];
      counts[letter] = (counts[letter] || 0) + 1;
      cell.className = "cell " + letter + (record && record.failures ? " retried" : "");
      cell.dataset.state = names[letter];
      cell.dataset.attempts = record ? String(record.attempts) : "";
      cell.dataset.failures = record ? String(record.failures) : "";
      // a segment that failed an attempt shows how many it had
      cell.textContent = record && record.failures ? String(record.attempts) : "";
      cell.title = "segment " + i + ": " + names[letter] + (record ? " (attempt " +
        record.attempts + (record.failures ? ", " + record.failures + " failed, last: " +
        record.error : "") + ")" : "");
    }
    text("segment-counts", Object.keys(names).filter((k) => counts[k])
      .map((k) => counts[k] + " " + names[k]).join(", "));
  }

  function drawRate(value) {
    if (value === null || value === undefined) return;
    rates.push(value);
    if (rates.length > 300) rates.shift();
    const top = Math.max.apply(null, rates) || 1;
    const step = rates.length > 1 ? 600 / (rates.length - 1) : 0;
    const points = rates.map((r, i) => (i * step).toFixed(1) + "," + (118 - (r / top) * 110).toFixed(1));
    document.querySelector("#rate-chart polyline").setAttribute("points", points.join(" "));
  }

  function show(job, segments) {
    text("state", job.state);
    document.getElementById("state").className = "state state-" + job.state;
    text("bytes", bytes(job.bytes_done) + (job.bytes_total === null ? "" : " / " + bytes(job.bytes_total)));
    text("rate", rate(job.rate));
    text("eta", seconds(job.eta));
    // job.retries is recorded when the copy ends; meanwhile the segments' failed attempts say
    const failed = Object.values(segments.tries).reduce((n, record) => n + record.failures, 0);
    text("attempts", job.attempts + " (retries " + Math.max(job.retries, failed) + ")");
    text("md5", job.md5 || "-");
    text("md5-expected", job.checksum || "-");
    text("checked-against", job.md5_checked_against || "-");
    text("sha512", job.sha512 || "-");
    text("verification", job.verification || "-");
    text("error", job.error ? job.error.code + ": " + job.error.message : "-");
    if (job.image) {
      text("step", job.image.step || "-");
      text("target-image", job.image.target_image_id || "-");
    }
    drawMap(segments.cells, segments.tries);
    drawRate(job.rate);
  }

  const first = JSON.parse(map.dataset.segments);
  drawMap(first.cells, first.tries);
  const source = new EventSource(root.dataset.events);
  source.addEventListener("progress", (event) => {
    const data = JSON.parse(event.data);
    text("stream-state", "live");
    show(data.job, data);
  });
  source.addEventListener("end", (event) => {
    const reason = JSON.parse(event.data).reason;
    source.close();
    text("stream-state", reason === "finished" ? "finished" : "stream ended (" + reason + "): reload to follow");
    const cancel = document.getElementById("cancel-form");
    if (reason === "finished" && cancel) cancel.remove();
  });
  source.onerror = () => { text("stream-state", "reconnecting…"); };
})();
