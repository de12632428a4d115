"""Schemathesis hooks for scripts/schemathesis.sh: path ids are sometimes those of the seed objects the script
created (a source, a target, a run of the source), so that operations meet real objects as well as unknown
ids."""

import os
import random

import schemathesis

SEEDS = {
    "/systems/{id}": [os.environ.get("SEED_SOURCE"), os.environ.get("SEED_TARGET")],
    "/jobs/{id}": [os.environ.get("SEED_JOB")],
}


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    if not path_parameters or "id" not in path_parameters:
        return path_parameters
    path = context.operation.path
    for prefix, ids in SEEDS.items():
        ids = [i for i in ids if i]
        if prefix in path and ids and random.random() < 0.5:
            path_parameters["id"] = random.choice(ids)
    return path_parameters
