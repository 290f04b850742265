#!/usr/bin/env python3
"""The one summary of a chaos run (chaos/run.sh calls this): the scenario, the
faults applied with their times, loadgen's counts and latencies from its JSON
report, and what verify said. Reads $CHAOS_DIR/{events.log, reports/*}."""

import argparse
import json
import os
import sys


def inr(paise):
    if paise is None:
        return "?"
    sign = "-" if paise < 0 else ""
    whole, frac = divmod(abs(paise), 100)
    digits = str(whole)
    if len(digits) > 3:
        head, tail = digits[:-3], digits[-3:]
        groups = []
        while len(head) > 2:
            groups.insert(0, head[-2:])
            head = head[:-2]
        groups.insert(0, head)
        digits = ",".join(groups) + "," + tail
    return f"{sign}₹{digits}.{frac:02d}"


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def row(label, value=""):
    return f"{label:<18}{value}".rstrip()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scenario", required=True)
    p.add_argument("--t0", type=int, required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--verify-rc", type=int, required=True)
    p.add_argument("--died", default="")
    p.add_argument("--rate", required=True)
    p.add_argument("--duration", required=True)
    p.add_argument("--seed", required=True)
    p.add_argument("--bank-latency", default="0")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--mix", default="")
    a = p.parse_args()
    reports = os.path.join(a.dir, "reports")
    lg = load_json(os.path.join(reports, "loadgen.json"))
    vf = load_json(os.path.join(reports, "verify.json"))
    out = []

    # Faults: what each script did, from events.log, and how each script ended.
    faults = []
    try:
        with open(os.path.join(reports, "faults.tsv")) as f:
            faults = [line.rstrip("\n").split("\t", 1) for line in f if line.strip()]
    except OSError:
        pass
    failed_faults = [f for f in faults if f[0] != "0"]
    events = []
    try:
        with open(os.path.join(a.dir, "events.log")) as f:
            for line in f:
                parts = line.rstrip("\n").split("\t", 2)
                if len(parts) == 3 and parts[0].isdigit():
                    events.append(((int(parts[0]) - a.t0) / 1000, parts[1], parts[2]))
    except OSError:
        pass

    # The verdict first, so it is the line nobody misses.
    reasons = []
    if a.verify_rc == 1:
        reasons.append("verify found violations")
    elif a.verify_rc != 0:
        reasons.append(f"verify could not check (exit {a.verify_rc})")
    if a.died:
        reasons.append(f"died without being killed by a fault: {a.died}")
    if failed_faults:
        reasons.append(f"{len(failed_faults)} fault script(s) failed")
    if lg is None:
        reasons.append("loadgen wrote no report")
    if a.verify_rc == 1 or a.died:
        verdict = "FAIL"
    elif reasons:
        verdict = "COULD NOT CHECK"
    else:
        verdict = "PASS"

    out.append(f"== chaos run: {a.scenario} ==")
    out.append(row("result", verdict + (": " + "; ".join(reasons) if reasons else "")))
    if lg:
        args = lg["args"]
        out.append(row("load", f"{a.rate} tx/s for {a.duration} s, concurrency {args['concurrency']}, "
                               f"amounts {args['amount']}, {len(args['vpas'])} VPAs, "
                               f"mix {args.get('mix', 'p2p')}"
                               + (f" ({len(args.get('merchants', []))} merchants)" if args.get("merchants") else "")
                               + f", seed {a.seed}"
                               + (f", bank latency {a.bank_latency}+0..{a.bank_latency} ms"
                                  if a.bank_latency != "0" else "")))
    else:
        out.append(row("load", f"{a.rate} tx/s for {a.duration} s, seed {a.seed}"))
    if a.nodes > 1:
        out.append(row("deployment", f"{a.nodes} switch nodes behind haproxy (round robin, /readyz checks); "
                                     "loadgen sends to the balancer"))

    out.append(row("faults", "none (baseline)" if not faults else
                   f"{len(faults)} applied, {len(failed_faults)} failed; t = s after the load started"))
    try:
        with open(os.path.join(reports, "plan.txt")) as f:
            plan = [line.strip() for line in f if line.strip()]
    except OSError:
        plan = []
    if plan:
        out.append(row("  planned", plan[0]))
        out.extend(row("", p) for p in plan[1:])
        out.append(row("  done", ""))
    for t, script, what in events:
        out.append(f"  t+{t:5.1f}  {script:<20} {what}")
    for rc, what in failed_faults:
        out.append(f"  FAILED (exit {rc}): {what}  (log: {a.dir}/logs/faults.log)")
    # Each restart of a switch node starts a new section of its log ("=== <time>
    # started by …"); each saga it resumed (its own after a restart, or one it
    # claimed from a dead node) logs one line.
    node_logs = ["switch"] + [f"switch-{k}" for k in range(2, a.nodes + 1)]
    restarts, resumed_total, per_node = 0, 0, []
    for name in node_logs:
        sections = []
        try:
            with open(os.path.join(a.dir, "logs", f"{name}.log"), errors="replace") as f:
                for line in f:
                    if line.startswith("=== "):
                        sections.append(0)
                    elif sections and "resuming saga from its checkpoint" in line:
                        sections[-1] += 1
        except OSError:
            continue
        if len(sections) > 1:
            restarts += len(sections) - 1
            per_node.append(f"{name} {len(sections) - 1}")
        resumed_total += sum(sections)
        if a.nodes == 1 and len(sections) > 1:
            out.append(row("  switch restarts", f"{len(sections) - 1}: sagas resumed from their checkpoints "
                                                f"after each: {', '.join(map(str, sections[1:]))}"))
    if a.nodes > 1:
        out.append(row("  node restarts", f"{restarts} ({', '.join(per_node) or 'none'}); "
                                          f"{resumed_total} saga(s) resumed from checkpoints on all nodes"))
        takeovers = [what for _, _, what in events if what.startswith("takeover: ") and "owns none" in what]
        if takeovers:
            times = []
            for w in takeovers:
                parts = w.split()
                try:
                    times.append(float(parts[parts.index("after") - 1].rstrip("s")))
                except (ValueError, IndexError):
                    pass
            if times:
                out.append(row("  takeovers", f"{len(times)} measured: the killed node owned no PENDING saga "
                                              f"{min(times):.1f}-{max(times):.1f} s after the kill "
                                              f"(mean {sum(times) / len(times):.1f} s)"))

    if lg:
        s, e = lg["schedule"], lg["errors"]
        st = lg["statuses"]
        out.append(row("loadgen", f"sent {s['sent']} ({s['achieved_send_rate']:.1f} tx/s, unsent {s['unsent']}), "
                                  f"accepted {lg['accepted']}, terminal {lg['terminal']}, "
                                  f"abandoned {lg['abandoned']}"))
        out.append(row("  statuses", "  ".join(f"{k} {st.get(k, 0)}" for k in
                                               ("SUCCESS", "FAILED", "REVERSED", "PENDING"))))
        by_type = lg.get("by_type", {})
        if by_type:
            out.append(row("  by type", f"{'':<9}{'sent':>7}{'accepted':>10}{'SUCCESS':>9}{'FAILED':>8}"
                                        f"{'REVERSED':>10}{'PENDING':>9}{'errors':>8}"))
            for kind in ("P2P", "P2M", "COLLECT", "REFUND"):
                t = by_type.get(kind)
                if t is None:
                    continue
                ts = t["statuses"]
                out.append(row("", f"{kind:<9}{t['sent']:>7}{t['accepted']:>10}{ts.get('SUCCESS', 0):>9}"
                                   f"{ts.get('FAILED', 0):>8}{ts.get('REVERSED', 0):>10}"
                                   f"{ts.get('PENDING', 0):>9}{t['errors']:>8}"))
            if lg.get("refund_fallbacks"):
                out.append(row("", f"{lg['refund_fallbacks']} refund arrival(s) sent as P2P/P2M: "
                                   "no SUCCESS payment to refund was known yet"))
        if lg["reasons"]:
            out.append(row("  reasons", "  ".join(f"{k} {v}" for k, v in sorted(lg["reasons"].items()))))
        out.append(row("  errors", f"{e['total']} (send {e['send']}, follow {e['follow']})"
                                   + ("  — expected while a switch or bank is down; not violations"
                                      if e["total"] else "")))
        for kind, n in sorted(e["send_by_kind"].items(), key=lambda kv: -kv[1]):
            out.append(f"    {n:>7}  send: {kind}")
        for kind, n in sorted(e["follow_by_kind"].items(), key=lambda kv: -kv[1]):
            out.append(f"    {n:>7}  follow: {kind}")
        out.append(f"  {'latency ms':<22}{'n':>7}{'p50':>9}{'p90':>9}{'p99':>9}{'max':>9}")
        lat = lg["latency_ms"]
        for label, key in (("accept (sched->202)", "accept"), ("accept->terminal", "accept_to_terminal"),
                           ("end-to-end", "end_to_end")):
            d = lat[key]
            out.append(f"  {label:<22}{d['count']:>7}{d['p50_ms']:>9.1f}{d['p90_ms']:>9.1f}"
                       f"{d['p99_ms']:>9.1f}{d['max_ms']:>9.1f}")
        for w in lg.get("warnings", []):
            out.append(f"  loadgen warning: {w}")
    else:
        out.append(row("loadgen", f"no report (see {a.dir}/logs/loadgen.log)"))

    if vf:
        tx = vf["transactions"]
        total = sum(c["count"] for c in tx.values())
        counts = "  ".join(f"{k} {tx.get(k, {}).get('count', 0)}" for k in
                           ("SUCCESS", "FAILED", "REVERSED", "PENDING"))
        out.append(row("verify", f"exit {a.verify_rc}: {total} transactions in the switch: {counts}"))
        for kind, st in sorted(vf.get("by_type", {}).items()):
            out.append(row(f"  {kind}", "  ".join(f"{k} {st.get(k, 0)}" for k in
                                                  ("SUCCESS", "FAILED", "REVERSED", "PENDING"))))
        collects = vf.get("collects")
        if collects:
            out.append(row("  collects", "  ".join(f"{k} {v}" for k, v in sorted(collects.items()))))
        for b in vf["banks"]:
            ops = "  ".join(f"{k} {v}" for k, v in sorted(b["by_outcome"].items()))
            out.append(row(f"  bank {b['code']}", f"{b['ops']} ops: {ops}"))
        m = vf["money"]
        out.append(row("  money", f"feeds' net {inr(m['feed_net_paise'])}; balances {inr(m.get('balance_paise'))}"
                                  f", expected {inr(m.get('expected_paise'))}"))
        if vf["violation_count"] == 0:
            out.append(row("  violations", "none"))
        else:
            out.append(row("  violations", f"{vf['violation_count']} of {len(vf['violations'])} kind(s)"))
            for kind, g in vf["violations"].items():
                out.append(f"    {kind}: {g['count']}")
                for ex in g["examples"]:
                    where = ", ".join(f"{k} {ex[k]}" for k in ("bank", "op_id", "txn_id") if ex.get(k))
                    out.append(f"      - {ex['detail']}" + (f" ({where})" if where else ""))
        for note in vf.get("notes", []):
            out.append(f"  note: {note}")
    else:
        out.append(row("verify", f"exit {a.verify_rc}, no JSON report; its output:"))
        try:
            with open(os.path.join(reports, "verify.txt")) as f:
                out.extend("  | " + line.rstrip() for line in f.readlines()[-15:])
        except OSError:
            pass
    out.append(row("files", f"{a.dir}/reports (loadgen.json, verify.json, verify.txt), logs in {a.dir}/logs"))
    print("\n".join(out))


if __name__ == "__main__":
    sys.exit(main())
