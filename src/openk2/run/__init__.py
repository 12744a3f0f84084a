"""The whole K2 recipe as one command: `openk2 run --recipe R` (docs/run.md).

A pipeline recipe holds each stage's own recipe (openk2.run.recipe); the plan turns it into `openk2`
commands (openk2.run.stages) run one after another as subprocesses, skipped when current and resumed when
interrupted (openk2.run.pipeline, openk2.run.ledger); one report draws the stages together
(openk2.run.report).
"""
