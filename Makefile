# Two entry points for a newcomer: `make demo` and `make test`. Each sets up .venv itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The machine's pip config may cap torchvision below the pinned release; the pins in
# pyproject.toml are the project's contract, so ignore that external constraint file.
export PIP_CONSTRAINT := /dev/null
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: demo test lint install clean installer

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
	@echo "== 1/4 phantom data (MURA layout, external set, DICOM studies) -> $(DEMO)/data"
	$(VENV)/bin/mura-synth $(DEMO)/data --seed 0 --mura-patients $(DEMO_PATIENTS) --external-images 300 --dicom-studies 12
	@echo "== 2/4 train custom_cnn at 128 px -> $(DEMO)/train"
	$(VENV)/bin/mura-train --data mura:$(DEMO)/data/mura --out $(DEMO)/train --arch custom_cnn \
		--input-size 128 --epochs $(DEMO_EPOCHS) --batch-size 32 --lr 2e-3 --patience $(DEMO_EPOCHS)
	@echo "== 3/4 export, INT8 quantization and validation gate -> $(DEMO)/bundle"
	$(VENV)/bin/mura-compress --checkpoint $(DEMO)/train/checkpoint_best.pt --out $(DEMO)/bundle \
		--calib-data mura:$(DEMO)/data/mura --val-data mura:$(DEMO)/data/mura \
		--val-data folder:$(DEMO)/data/external --name phantom-custom-cnn
	@echo "== 4/4 screen the phantom DICOM studies -> $(DEMO)/screen"
	$(VENV)/bin/mura-screen $(DEMO)/data/dicom --model $(DEMO)/bundle --out $(DEMO)/screen
	@echo "Done. Outputs: $(DEMO)/train (checkpoints, metrics.csv), $(DEMO)/bundle (card.json,"
	@echo "validation.md), $(DEMO)/screen (worklist.csv). View: $(VENV)/bin/mura-viewer $(DEMO)/data/dicom --model $(DEMO)/bundle"

test: $(STAMP)
	$(VENV)/bin/ruff check .
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest -q $(PYTEST_ARGS)

# Clinic packages -> installers/dist/: frozen app, .tar.gz, .deb; checks the NSIS script when
# makensis is installed. BUNDLE=path ships that model bundle (default: a phantom placeholder).
installer: $(STAMP)
	installers/build.sh $(if $(BUNDLE),--bundle $(BUNDLE)) $(INSTALLER_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

clean:
	rm -rf runs .pytest_cache installers/build installers/dist
