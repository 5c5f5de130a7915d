#!/bin/sh
# TinyFaceDetector against face-api on three sample photos (faceapi-conf.sh;
# the reference takes ~5 s of CPU a photo, once: its results are cached).
set -u
kind=tiny
photos="sample1.jpg sample4.jpg sample5.jpg"
. "$(cd "$(dirname "$0")" && pwd)/faceapi-conf.sh"
