"""What the tests share: fixtures, tiny configs, fake data and loaders, one concept a module.

Test files import helpers from here only, never from another test file or test folder; tests/conftest.py
registers the shared fixtures, and a folder's conftest.py only picks the ones that folder uses.
"""
