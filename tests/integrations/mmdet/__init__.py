"""Tests of the MMDetection integration: where mmdet is missing each module skips, saying how to install it."""
