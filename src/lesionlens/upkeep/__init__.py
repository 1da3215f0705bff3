"""Keeping the model fresh (issue 14): drift monitoring, retraining, the promotion gate.

    freeze_gate_set(data, out) / open_gate_set(folder)   upkeep.gateset (a frozen, hashed gate set)
    run_gate(champion, challenger, gate_set, out)        upkeep.gate (`lesionlens gate`)
    judge(champion_ev, challenger_ev, subgroups)         upkeep.noninferiority (the statistics)
    write_gate_report(result, out) -> gate.json, .html   upkeep.gate_report

Nothing is imported here: import from the modules.
"""
