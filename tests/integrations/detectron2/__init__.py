"""Tests of ddetr_plugin.integrations.detectron2 (skipped where detectron2 is not installed)."""
