def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of tools/train_detectron2.py (tens of seconds each)")
