"""Benchmark support of the checkout, kept out of the installed package.

- ``tables.py``: markdown tables for ``tools/benchmark_op.py``, ``tools/benchmark_model.py`` and
  ``tools/gpu_check.py`` (imports no torch: the GPU check renders its report before anything is built);
- ``msda_baseline/``: CUDA kernels with the official op's design, the GPU baseline that
  ``tools/benchmark_op.py`` times our kernels against, compiled just in time on first use;
- ``gpu-<device>.md``: the reports ``make gpu-check`` writes, one per GPU model.

Everything imports it one way, as the package ``benchmarks`` from the repository root:
``from benchmarks.msda_baseline import baseline_ms_deform_attn``. The tools put the root on
``sys.path`` themselves; pytest finds it as the root of ``tests``. ``setup.py`` packages only
``ddetr_plugin``, so no wheel ships this folder.
"""
