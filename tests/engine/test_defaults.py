"""The command line of DESIGN §6 and the per-process setup."""
import logging
import os

import pytest

from ddetr_plugin.config import ConfigKeyError, get_cfg, load_config
from ddetr_plugin.engine import (check_component_names, check_label_space, config_overrides, default_argument_parser,
                                 default_setup)


def test_flags_of_the_design():
    args = default_argument_parser().parse_args(
        ["--config", "c.yaml", "--num-gpus", "2", "--num-machines", "3", "--machine-rank", "1",
         "--dist-url", "tcp://host:1234", "--resume", "--eval-only", "SOLVER.BASE_LR", "0.1", "OUTPUT_DIR", "o"])
    assert args.config_file == "c.yaml"
    assert (args.num_gpus, args.num_machines, args.machine_rank) == (2, 3, 1)
    assert args.dist_url == "tcp://host:1234" and args.resume and args.eval_only
    assert config_overrides(args) == ["SOLVER.BASE_LR", "0.1", "OUTPUT_DIR", "o"]


def test_defaults_and_config_file_alias():
    args = default_argument_parser().parse_args(["--config-file", "x.yaml"])
    assert args.config_file == "x.yaml"
    assert (args.num_gpus, args.num_machines, args.machine_rank, args.dist_url) == (1, 1, 0, "auto")
    assert not args.resume and not args.eval_only and config_overrides(args) == []


def test_unknown_component_name_lists_the_registered_ones():
    check_component_names(load_config(None))  # the defaults are all registered
    cfg = load_config(None, ["MODEL.BACKBONE.NAME", "NoSuchBackbone"])
    with pytest.raises(ConfigKeyError) as info:
        check_component_names(cfg)
    assert "MODEL.BACKBONE.NAME" in str(info.value) and "NoSuchBackbone" in str(info.value)
    assert "ResNetBackbone" in str(info.value)


def test_unknown_label_space_lists_the_choices():
    check_label_space(load_config(None, ["MODEL.LABEL_SPACE", "category_id"]))
    with pytest.raises(ValueError, match=r"MODEL.LABEL_SPACE must be one of 'contiguous', 'category_id', "
                                         r"got 'category_ids'"):
        check_label_space(load_config(None, ["MODEL.LABEL_SPACE", "category_ids"]))


@pytest.fixture
def restore_loggers():
    names = ("ddetr_plugin", "fvcore", "__main__")
    saved = {name: (logging.getLogger(name).handlers[:], logging.getLogger(name).propagate,
                    logging.getLogger(name).level) for name in names}
    yield
    for name, (handlers, propagate, level) in saved.items():
        logger = logging.getLogger(name)
        for handler in logger.handlers[:]:
            if handler not in handlers:
                logger.removeHandler(handler)
                handler.close()
        logger.propagate, logger.level = propagate, level


def test_default_setup_writes_config_and_log(tmp_path, restore_loggers):
    cfg = get_cfg()
    cfg.merge_from_list(["OUTPUT_DIR", str(tmp_path / "out"), "SEED", 7, "SOLVER.BASE_LR", 0.5])
    default_setup(cfg)
    logging.getLogger("ddetr_plugin.test").info("hello from the test")
    for handler in logging.getLogger("ddetr_plugin").handlers:
        handler.flush()
    assert load_config(str(tmp_path / "out" / "config.yaml")).SOLVER.BASE_LR == 0.5
    log = open(tmp_path / "out" / "log.txt").read()
    assert "hello from the test" in log and "Full config saved" in log
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path / "out"))
    import torch
    first = torch.rand(3)
    default_setup(cfg)
    assert torch.equal(torch.rand(3), first)  # seeded from SEED (+ rank 0)
