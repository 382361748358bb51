# rnnsweep on a CUDA GPU box.
#
#   docker build -t rnnsweep .
#   docker run --rm --gpus all -v rnnsweep-data:/data rnnsweep run /app/studies/quick.toml
#   docker run --rm -v rnnsweep-data:/data rnnsweep report
#
# The base image already holds a CUDA build of torch (2.5.1), which meets the torch>=2.1
# floor in pyproject.toml, so `pip install .` below keeps it and downloads no torch. Like
# every official pytorch/pytorch image, it also holds the Triton that torch release pins
# (torch 2.5.1 requires triton 3.1.0 on Linux x86_64): the Triton time loop
# (rnnsweep/kernels/_triton.py) needs no extra install. The build checks that it imports.
FROM pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

# A C compiler and the C library headers (the runtime base has neither): the native CPU
# time loops are compiled on first use, and Triton (the Triton time loop, and
# torch.compile's kernels with RNNSWEEP_COMPILE=1) builds its launcher with the host
# compiler on first launch; without gcc that fails at run time. Versions are left to
# the base image's Ubuntu release, whose security updates should win over a pin.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY rnnsweep/ rnnsweep/
# Not part of the installed package: kept under /app/studies as ready-made specs.
COPY studies/ studies/
RUN python -c "import triton" \
    && pip install --no-cache-dir . \
    && groupadd --gid 1000 rnnsweep \
    && useradd --create-home --uid 1000 --gid 1000 rnnsweep \
    && mkdir -p /data \
    && chown 1000:1000 /data

# Non-root (user rnnsweep, numeric so hosts and hadolint DL3066 can resolve it): nothing
# needs root at run time. A named volume inherits /data's owner; for a bind mount, run with
# --user "$(id -u):$(id -g)" so the results belong to the host user.
USER 1000:1000
WORKDIR /data
VOLUME /data
ENV RNNSWEEP_STORAGE=sqlite:////data/rnnsweep.db

ENTRYPOINT ["rnnsweep"]
CMD ["--help"]
