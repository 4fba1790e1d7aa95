"""The original's ICCV 2023 training configs by their original paths (see _common.py)."""
