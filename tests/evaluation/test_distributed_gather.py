"""The evaluator under a real 2-process gloo group: rank 0 sees every process's predictions."""
import datetime
import json
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ddetr_plugin.evaluation import COCOEvaluator
from ddetr_plugin.utils import comm

from tests._support.coco_detections import CATEGORY_TO_LABEL, IMAGE_IDS, model_outputs

# Half the images each; rank 1 also repeats image 1, as a sampler padding its shard does.
SHARDS = {0: [1, 2], 1: [5, 9, 1]}


def _worker(rank: int, world_size: int, init_file: str, gt_path: str, out_dir: str, record_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=60))
    try:
        evaluator = COCOEvaluator(gt_path, None, None, out_dir, distributed=True)
        evaluator.process(*model_outputs(CATEGORY_TO_LABEL, SHARDS[rank]))
        record = {
            "results": evaluator.evaluate(),
            "rank": comm.get_rank(),
            "world_size": comm.get_world_size(),
            "is_main": comm.is_main_process(),
            "gathered": comm.all_gather({"rank": rank}),
            "mean_rank": comm.reduce_dict({"rank": torch.tensor(float(rank))})["rank"].item(),
            "sum_rank": comm.reduce_dict({"rank": torch.tensor(float(rank))}, average=False)["rank"].item(),
        }
        comm.synchronize()
        Path(record_dir, f"rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


def test_two_processes_gather_to_rank_zero(gt_path, tmp_path):
    single_dir = tmp_path / "single"
    single = COCOEvaluator(gt_path, None, None, str(single_dir), distributed=False)
    single.process(*model_outputs(CATEGORY_TO_LABEL, IMAGE_IDS))
    expected = single.evaluate()

    dist_dir = tmp_path / "dist"
    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(gt_path), str(dist_dir), str(tmp_path)), nprocs=2)

    rank0 = json.loads((tmp_path / "rank0.json").read_text())
    rank1 = json.loads((tmp_path / "rank1.json").read_text())
    assert rank0["results"] == expected
    assert rank1["results"] == {}
    assert (rank0["rank"], rank0["world_size"], rank0["is_main"]) == (0, 2, True)
    assert (rank1["rank"], rank1["world_size"], rank1["is_main"]) == (1, 2, False)
    assert rank0["gathered"] == rank1["gathered"] == [{"rank": 0}, {"rank": 1}]
    assert rank0["mean_rank"] == rank1["mean_rank"] == 0.5
    assert rank0["sum_rank"] == rank1["sum_rank"] == 1.0
    # Only rank 0 writes, and what it writes is the single-process file.
    assert (dist_dir / "coco_instances_results.json").read_text() == \
        (single_dir / "coco_instances_results.json").read_text()
