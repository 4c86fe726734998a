#!/usr/bin/python
# Copyright: tuner developers. Apache-2.0 (see LICENSE in the tuner repository).
"""Ansible module: apply or roll back a tuner profile, idempotently, with check and diff mode."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: tuner_profile
short_description: Apply or roll back a tuner profile (kernel network settings proven by measurement)
description:
  - Runs C(tuner apply) for O(state=present) and C(tuner rollback) for O(state=absent) on the managed host,
    optionally inside a network namespace. Reports C(changed) only when a kernel setting was (or, in check
    mode, would be) written. Diff mode shows each knob's live value and the profile's value.
  - Socket settings of the profile (for example C(TCP_NODELAY)) are set by the application, never by tuner;
    they are returned in RV(socket).
options:
  name:
    description: Profile name (found in /etc/tuner/profiles, then among the shipped profiles) or path.
    type: str
  state:
    description: V(present) applies the profile; V(absent) rolls back what was applied with O(state_dir).
    type: str
    choices: [present, absent]
    default: present
  netns:
    description: Apply inside this network namespace instead of the host.
    type: str
  state_dir:
    description:
      - Where tuner keeps the originals it replaced, so that V(absent) restores exactly them.
      - Defaults to C(/var/lib/tuner/ansible/NAME), one journal per profile name.
    type: path
  tuner:
    description: The tuner command on the managed host.
    type: str
    default: tuner
author:
  - tuner developers
"""

EXAMPLES = r"""
- name: Low-latency settings for the API tier
  tuner.net.tuner_profile:
    name: low-latency-rr

- name: Take them away again
  tuner.net.tuner_profile:
    name: low-latency-rr
    state: absent
"""

RETURN = r"""
changes:
  description: The knobs written (or that would be written in check mode), with old and new values.
  returned: always
  type: list
socket:
  description: Socket settings the application must set itself.
  returned: when state is present
  type: dict
restored:
  description: The knobs put back to their originals.
  returned: when state is absent
  type: list
"""

import json  # noqa: E402 - Ansible modules keep their documentation first
import re  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402


def _run(module, args):
    """Run tuner with ``args`` and --json; fail the task with tuner's own message when it fails."""
    cmd = [module.params["tuner"], *args, "--json"]
    rc, out, err = module.run_command(cmd)
    if rc != 0:
        module.fail_json(msg=f"{' '.join(cmd)} failed (exit {rc}): {err.strip() or out.strip()}", rc=rc,
                         stdout=out, stderr=err)
    try:
        return json.loads(out)
    except ValueError:
        module.fail_json(msg=f"{' '.join(cmd)} printed no JSON", stdout=out, stderr=err)


def _target_args(params):
    return ["--netns", params["netns"]] if params["netns"] else []


def _diff(changes):
    before = "".join(f"{c['knob']} = {c['old']}\n" for c in changes)
    after = "".join(f"{c['knob']} = {c['new']}\n" for c in changes)
    return {"before": before, "after": after}


def main():
    module = AnsibleModule(
        argument_spec={
            "name": {"type": "str"},
            "state": {"type": "str", "choices": ["present", "absent"], "default": "present"},
            "netns": {"type": "str"},
            "state_dir": {"type": "path"},
            "tuner": {"type": "str", "default": "tuner"},
        },
        required_if=[("state", "present", ["name"])],
        required_one_of=[("name", "state_dir")],
        supports_check_mode=True,
    )
    p = module.params
    stem = re.sub(r"[^A-Za-z0-9._-]", "-", (p["name"] or "profile").rsplit("/", 1)[-1].removesuffix(".toml"))
    state_dir = p["state_dir"] or f"/var/lib/tuner/ansible/{stem}"
    target = _target_args(p)

    if p["state"] == "present":
        if module.check_mode:
            plan = _run(module, ["apply", p["name"], "--dry-run", *target])
            changes = plan.get("changes", [])
        else:
            result = _run(module, ["apply", p["name"], "--state-dir", state_dir, *target])
            changes = result.get("applied", []) if result.get("changed") else []
            plan = result
        out = {"changed": bool(changes), "changes": changes, "socket": plan.get("socket", {}),
               "not_applicable": plan.get("not_applicable", []), "state_dir": state_dir}
        if module._diff:
            out["diff"] = _diff(changes)
        module.exit_json(**out)

    # absent: roll back what this state directory recorded
    active = _run(module, ["profiles", "active", "--state-dir", state_dir, *target]).get("active", [])
    if module.check_mode or not active:
        module.exit_json(changed=bool(active), restored=[], active=active, state_dir=state_dir)
    result = _run(module, ["rollback", "--state-dir", state_dir, *target])
    restored = result.get("restored", [])
    out = {"changed": bool(result.get("changed")), "restored": restored, "state_dir": state_dir}
    if module._diff:
        out["diff"] = {"before": "".join(f"{c['knob']} = {c['old']}\n" for c in restored),
                       "after": "".join(f"{c['knob']} = {c['new']}\n" for c in restored)}
    module.exit_json(**out)


if __name__ == "__main__":
    main()
