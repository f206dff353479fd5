import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))  # the package, without installing it
sys.path.insert(0, os.path.dirname(__file__))  # references.py
