"""Apply, verify and roll back profiles: a pure plan, one writer (the Applier), a journal of originals."""

from tuner.apply.applier import Applier, FileWrite, check_file_target, rollback
from tuner.apply.journal import FileStep, Journal, SetStep, Transaction, ensure_state_dir
from tuner.apply.plan import ABSENT_REASON, HOST_ONLY_REASON, Change, NotApplicable, Plan, Setting, make_plan
from tuner.apply.target import HOST, Target, run_in_target
from tuner.apply.verify import Drift, verify

__all__ = [
    "ABSENT_REASON",
    "HOST",
    "HOST_ONLY_REASON",
    "Applier",
    "Change",
    "Drift",
    "FileStep",
    "FileWrite",
    "Journal",
    "NotApplicable",
    "Plan",
    "SetStep",
    "Setting",
    "Target",
    "Transaction",
    "check_file_target",
    "ensure_state_dir",
    "make_plan",
    "rollback",
    "run_in_target",
    "verify",
]
