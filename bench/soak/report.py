"""The soak's report as Markdown (what docs/operations.md shows): `report.py REPORT_JSON`."""

import json
import sys


def markdown(r):
    c = r["counts"]
    out = []
    out.append(
        "%s, %d s: %d admin requests (%d acknowledged (event, object) pairs, %d reads), %d gateway requests "
        "(%d on new handshakes), %d WebSockets (%d messages echoed), %d restarts; %d violations."
        % (
            r["backend"],
            r["duration_s"],
            c.get("admin_requests", 0),
            r["audit"]["acknowledged_writes"],
            c.get("admin_reads", 0),
            c.get("gateway_requests", 0),
            c.get("gateway_handshakes", 0),
            c.get("websockets_opened", 0),
            c.get("websocket_messages", 0),
            sum(v["restarts"] for v in r["resources"].values()),
            c.get("violations", 0),
        )
    )
    out.append("")
    out.append("| replica | restarts | exits (signal, status, s) | last life | RSS KiB after warm-up → end | fds | threads | first-life RSS KiB |")
    out.append("|---|---:|---|---:|---|---|---|---:|")
    for name, v in r["resources"].items():
        g = v["growth"] or {}
        exits = ", ".join("%s %s %.1f" % (s[0].replace("SIG", ""), s[1], s[2]) for s in v["exits"])

        def pair(k):
            p = g.get(k)
            return "%g → %g" % (p[0], p[1]) if p else "n/a"

        out.append(
            "| %s | %d | %s | %s s | %s | %s | %s | %s |"
            % (name, v["restarts"], exits, g.get("life_seconds", "n/a"), pair("rss_kib"), pair("fds"), pair("threads"),
               "%g" % g["rss_kib_first_life"] if g.get("rss_kib_first_life") else "n/a")
        )
    p = r.get("propagation")
    if p:
        out.append("")
        out.append(
            "Propagation (%d samples; first and last %d): p50 %.1f → %.1f ms, p99 %.1f → %.1f ms, max %.1f ms."
            % (p["samples"], p["window_samples"], p["start_p50_ms"], p["end_p50_ms"], p["start_p99_ms"], p["end_p99_ms"], p["max_ms"])
        )
    out.append("")
    out.append(
        "Audit: %d events for %d acknowledged (event, object) pairs, %d missing. Final decisions compared: %d. "
        "Failovers: admin %d, gateway %d, WebSocket closes by a restarting gateway %d; 503 in a "
        "restart window: admin %d, gateway %d; uploads refused at the 50 limit: %d."
        % (
            r["audit"]["audit_events"],
            r["audit"]["acknowledged_writes"],
            r["audit"]["missing_events"],
            r["final_decisions"],
            c.get("admin_failovers", 0),
            c.get("gateway_failovers", 0),
            c.get("websockets_closed_by_restart", 0),
            c.get("admin_503_in_restart_window", 0),
            c.get("gateway_503_in_restart_window", 0),
            c.get("uploads_refused_at_limit", 0),
        )
    )
    return "\n".join(out)


if __name__ == "__main__":
    print(markdown(json.load(open(sys.argv[1]))))
