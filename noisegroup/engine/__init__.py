"""The training engine, one for every model family (`noisegroup.models.family`), from a laptop to many hosts.

    from noisegroup import engine
    state = engine.train(config, workdir, train_data, valid_data)   # S seeds, checkpoints, resume
    config, state = engine.restore(workdir)                          # no data, no training

Modules, one concern each:
    config      the schema of a training config (the engine's keys; the family adds its own), validated up front
    trainer     `Trainer` and `TrainState`: init, train step, validation step of one seed, as pure functions
    loop        `train` and `restore`
    sampler     which examples each seed's step sees (a pure function of seed and step)
    parallel    the ("seed", "data") mesh, multi-process set-up, seed-axis programs
    losses      loss-term registries and the weighted sum
    geco        GECO, a controller of one loss term's weight
    checkpoint  orbax checkpoints behind one small class
    runlog      config.json and metrics.jsonl
    pretrained  small float16 weight files to ship
"""


from noisegroup.engine.loop import restore, train

__all__ = ["restore", "train"]
