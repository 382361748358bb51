"""Checks before the first write: the Optuna schema is ours to use, the studies are ours.

Both read only. A run refuses, with one line, to write into a database whose
Optuna schema another Optuna version set up (Optuna would either refuse after
rnnsweep had already written, or migrate someone's data), and to add trials to an
Optuna study that some other tool, or another rnnsweep study, created under the
name rnnsweep would use (``STUDY.ARCH.dDEPTH``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import sqlalchemy as sa

from rnnsweep.errors import ForeignStudyError

__all__ = ["OWNER_ATTR", "check_optuna_schema", "check_ownership"]

# The user attribute rnnsweep sets on every Optuna study it creates (study.optuna_bridge.open_cell),
# with "arch" and "depth" beside it.
OWNER_ATTR = "rnnsweep_study"


def check_optuna_schema(con: sa.Connection, where: str, versions: list[str], release: str) -> None:
    """ForeignStudyError unless the Optuna tables are absent or at the installed head.

    ``versions``: the installed Optuna's schema revisions, oldest first (the last is its
    head); ``release``: its version. Both come from :mod:`rnnsweep.study.optuna_bridge`,
    the one module that reads Optuna's internals.
    """
    names = set(sa.inspect(con).get_table_names())
    if "studies" not in names and "version_info" not in names:
        return  # no Optuna tables yet: rnnsweep creates them
    current = None
    if "alembic_version" in names:
        current = con.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    if current is None and "studies" in names:
        if not con.execute(sa.text("SELECT COUNT(*) FROM studies")).scalar():
            return  # another process is creating this database right now: Optuna stamps it
    head = versions[-1]
    if current == head:
        return
    # head is the last of the installed Optuna's versions: a known one is older
    age = "older than" if current is None or current in versions else "unknown to"
    raise ForeignStudyError(
        f"{where} holds an Optuna schema {current or 'without a version'} that is {age} the "
        f"installed Optuna {release} (schema {head}); rnnsweep wrote nothing. "
        "Use a new storage, or an Optuna of that schema (`optuna storage upgrade` migrates "
        "an older one, for every tool that uses it)"
    )


def check_ownership(
    con: sa.Connection,
    study: str,
    registered: bool,
    cells: Mapping[str, tuple[str, int]],
    where: str,
) -> None:
    """ForeignStudyError unless each existing Optuna study in ``cells`` is this study's.

    ``cells`` maps the Optuna study names rnnsweep would create or resume to their
    (arch, depth); ``registered`` says whether ``study`` has its rnnsweep row. An
    Optuna study is this study's when the row exists and the study's user
    attributes name this study, arch and depth. A row and an Optuna study without
    attributes or trials is one this study began and did not finish creating (it
    stopped between the two writes): resuming it is safe.
    """
    names = set(sa.inspect(con).get_table_names())
    if "studies" not in names:
        return
    rows = con.execute(
        sa.text("SELECT study_id, study_name FROM studies WHERE study_name IN :names").bindparams(
            sa.bindparam("names", expanding=True)
        ),
        {"names": list(cells)},
    ).all()
    for study_id, name in rows:
        attrs = {
            k: json.loads(v)
            for k, v in con.execute(
                sa.text("SELECT key, value_json FROM study_user_attributes WHERE study_id = :i"),
                {"i": study_id},
            )
        }
        arch, depth = cells[name]
        ours = (
            attrs.get(OWNER_ATTR) == study
            and attrs.get("arch") == arch
            and (attrs.get("depth") == depth)
        )
        if registered and ours:
            continue
        if registered and not attrs:
            n_trials = con.execute(
                sa.text("SELECT COUNT(*) FROM trials WHERE study_id = :i"), {"i": study_id}
            ).scalar()
            if not n_trials:
                continue
        owner = attrs.get(OWNER_ATTR)
        whose = (
            f"rnnsweep study {owner!r}"
            if isinstance(owner, str) and owner != study
            else "another tool (it lacks rnnsweep's attributes)"
            if owner is None
            else "a study of that name removed from rnnsweep's tables"
        )
        raise ForeignStudyError(
            f"{where} already holds an Optuna study {name!r} that belongs to {whose}; "
            f"rnnsweep never writes into another's study and wrote nothing: choose another "
            "--study name"
        )
