def pytest_configure(config):
    config.addinivalue_line("markers", "slow: end-to-end runs of tools/train_net.py (tens of seconds each)")
