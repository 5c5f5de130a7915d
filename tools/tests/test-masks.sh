#!/bin/sh
# Mask, pruner and detection unit tests (seconds).
cd "$(dirname "$0")" && exec ${PYTHON:-/usr/bin/python3} -m unittest -v test_masks
