import os

os.environ.setdefault("NEUROFABRIC_PROGRESS", "0")
os.environ.setdefault("MPLBACKEND", "Agg")
