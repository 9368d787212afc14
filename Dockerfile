# A Beam worker image with vidcurate installed, for Dataflow, Flink and Spark workers:
#
#   docker build -t REGISTRY/vidcurate-worker:latest --build-arg BEAM_VERSION=$(python -c "import apache_beam; print(apache_beam.__version__)") .
#   docker push REGISTRY/vidcurate-worker:latest
#   vidcurate run ... --profile dataflow --sdk_container_image=REGISTRY/vidcurate-worker:latest
#
# The base is Beam's own Python SDK image (its boot entry point talks to the runner), so the
# worker's Beam and Python match the submitting machine's: build it with the Beam version you
# submit with. PyAV's wheels bundle FFmpeg: no system ffmpeg is needed. torch comes from the
# CPU index by default; for GPU workers pass --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124
ARG BEAM_VERSION=2.78.0
ARG PYTHON_VERSION=3.11
FROM apache/beam_python${PYTHON_VERSION}_sdk:${BEAM_VERSION}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /opt/vidcurate
COPY setup.py pyproject.toml README.md beam_config.yaml ./
COPY pipeline pipeline
COPY transforms transforms
COPY model_training model_training
RUN pip install --no-cache-dir --extra-index-url "${TORCH_INDEX}" ".[models,s3,gcs]" \
    && python -c "import av, cv2, pipeline.graph, transforms.stages, s3fs, gcsfs; print('vidcurate worker image ok')"

ENTRYPOINT ["/opt/apache/beam/boot"]
