#!/bin/sh
# SSD-MobileNetV1 against face-api on one sample photo (faceapi-conf.sh;
# the reference takes ~20 s of CPU a photo, once: its results are cached).
set -u
kind=ssd
photos="sample2.jpg"
. "$(cd "$(dirname "$0")" && pwd)/faceapi-conf.sh"
