"""The three dependency shapes of issue 3 as specs, shared by the plan tests
(edge by edge, no database) and the schedule tests (in a real database)."""

DBN = """
name: dbn
phases:
  - name: pretrain
    command: python dbn.py pretrain --layers {layers} --lr {pretrain_lr}
    grid: {layers: [1, 2], pretrain_lr: [0.1, 0.01]}
  - name: finetune
    after: pretrain
    command: python dbn.py finetune --layers {layers} --plr {pretrain_lr} --lr {finetune_lr}
    grid: {finetune_lr: [0.1, 0.01, 0.001]}
  - name: retrain
    after: finetune
    select: {metric: valid_error, mode: min}
    command: python dbn.py retrain --layers {layers} --plr {pretrain_lr} --lr {finetune_lr}
"""

CV = """
name: cv
phases:
  - name: cv
    command: python train.py --lr {lr} --wd {wd} --fold {fold} --n-folds {n_folds}
    grid: {lr: [0.1, 0.01], wd: [0, 1e-4]}
    folds: 5
  - name: summary
    after: cv
    group_by: [lr, wd]
    task: tasks.cv:aggregate
  - name: retrain
    after: cv
    group_by: []
    select: {metric: val_loss, mode: min, aggregate: mean, keys: [lr, wd]}
    command: python train.py --lr {lr} --wd {wd} --all-data
  - name: test
    after: retrain
    command: python test.py
"""

NESTED = """
name: nested
phases:
  - name: split
    task: tasks.cv:split
    folds: {count: 3, key: outer_fold}
  - name: inner
    after: split
    command: python train.py --outer {outer_fold} --inner {fold} --lr {lr}
    grid: {lr: [0.1, 0.01]}
    folds: 4
  - name: outer
    after: inner
    group_by: [outer_fold]
    select: {metric: val_loss, mode: min}
    command: python train.py --outer {outer_fold} --lr {lr}
  - name: report
    after: outer
    group_by: []
    task: tasks.cv:report
"""
