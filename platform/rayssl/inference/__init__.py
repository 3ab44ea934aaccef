"""Take the model away: export a fine-tuned classifier for plain PyTorch, batch-predict and embed
with Ray Data actor pools.

    runs.py        a run directory -> its config, latest checkpoint, classifier or backbone, class names
    export.py      `rayssl export`: model.pt2 (torch.export) + preprocess.json + a standalone predict.py
    standalone_predict.py  the predict.py copied next to model.pt2 (torch, numpy, PIL only; never imported here)
    workers.py     what runs inside Ray Data's workers (decode, the exported program's actor), light on imports
    inputs.py      INPUT (shard set, folder or s3:// prefix of images) -> decoded uint8 batches, quarantine,
                   the actor pool and the parquet writer that predict and embed share
    predict.py     `rayssl predict`: the exported program in an actor pool -> top-k predictions
    embed.py       `rayssl embed`: the backbone in an actor pool -> fixed_size_list<float32>[D] features

The top layer: it imports data/, models/, train/ and eval/; nothing below imports it.
"""
