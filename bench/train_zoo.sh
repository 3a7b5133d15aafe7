#!/usr/bin/env bash
# How the shipped models (bbcodec/zoo) were trained and exported, stage by stage.
#
#   bash bench/train_zoo.sh default [RUNS]                     # the shipped default (multiscale-residual's stages)
#   bash bench/train_zoo.sh default-v2|default-v2-float|mnist-v2  # from the repository root, venv active
#   bash bench/train_zoo.sh mnist [RUNS]
#   bash bench/train_zoo.sh calibrations                       # the calibrations shipped for small images
#   bash bench/train_zoo.sh photo-polyphase [OUT [--resume]]  # a longer run of the polyphase preset (not shipped)
#   bash bench/train_zoo.sh multiscale [RUNS]                  # the two-level polyphase likelihood
#   bash bench/train_zoo.sh multiscale-wide [RUNS]             # the same with context networks of 64 channels
#   bash bench/train_zoo.sh multiscale-linear [RUNS]           # the same with a linear path from the neighbours
#   bash bench/train_zoo.sh multiscale-residual [RUNS]         # ... and channels coupled on their residuals (default)
#   bash bench/train_zoo.sh multiscale-linear-float [RUNS]     # multiscale-linear's float twin
#   bash bench/train_zoo.sh multiscale-residual-float [RUNS]   # multiscale-residual's float twin
#   bash bench/train_zoo.sh multiscale-residual-longer [RUNS]  # multiscale-residual's stage 1 10,000 steps longer
#   bash bench/train_zoo.sh flowpp|flowpp-float [RUNS]         # Flow++ with binary or float coupling networks
#   bash bench/train_zoo.sh flowpp-deep [RUNS]                 # ... binary, 4 blocks a network (a larger binary share)
#   bash bench/train_zoo.sh topdown [RUNS] [OPTION...]         # the top-down ResNet VAE on multiscale-linear's data
#
# Each stage is a `bbcodec train` run that writes runs/<stage>/ (log, checkpoint,
# plot, exported model); a later stage starts from the previous stage's exported
# weights (--init-from). A stage that was cut off continues with the same command
# plus --resume. Times on one CPU thread of this project's 2-core machine:
# default 119 + 100 minutes (a shared machine), default-v2 30 + 37 + 22, default-v2-float 25 + 7 + 15, mnist 31, mnist-v2 13.
# The latent grid of each export was chosen by measuring real files
# (bench/README.md, "The latent grid's bound").
set -euo pipefail
D=../shared/data
NATURAL=("$D"/photos/0[0-3]?.png "$D"/photos/040.png "$D"/usc-sipi/misc "$D"/usc-sipi/textures
         "$D"/cifar10-subset/cifar10_subset_uint8_nhwc.npz
         --eval "$D"/photos/041.png --eval "$D"/photos/045.png --eval "$D"/photos/049.png
         --preset photo --crop 32 --batch-size 32 --threads 1)

natural() {  # natural NAME KIND GRID STORAGE SHIPPED: three stages, then the export to bbcodec/zoo/SHIPPED.safetensors
    local name=$1 kind=${2:-} grid=$3 storage=$4 shipped=$5
    bbcodec train "${NATURAL[@]}" $kind --steps 8000 --out "runs/$name-1" --name "$name-1"
    bbcodec train "${NATURAL[@]}" $kind --steps 2000 --lr 5e-4 --ema 0.998 --eval-every 250 \
        --init-from "$(ls "runs/$name-1/$name-1"-*.safetensors)" --out "runs/$name-2" --name "$name-2"
    bbcodec train "${NATURAL[@]}" $kind --steps 5000 --lr 4e-4 --ema 0.999 --eval-every 500 \
        --init-from "$(ls "runs/$name-2/$name-2"-*.safetensors)" --out "runs/$name-3" --name "$name-3"
    bbcodec export "runs/$name-3/checkpoint.safetensors" -o "bbcodec/zoo/$shipped.safetensors" \
        --grid-bound "$grid" --float-storage "$storage"
    plot "bbcodec/zoo/$shipped-training.png" "runs/$name-1/log.jsonl" "runs/$name-2/log.jsonl" "runs/$name-3/log.jsonl"
}

plot() {  # plot PNG LOG...: the training curves of a shipped model's stages
    python -c "from bbcodec.training.plots import plot_training as p; import sys; p(sys.argv[2:], sys.argv[1])" "$@"
}

# The polyphase pixel likelihood (bench/README.md, "Polyphase pixel likelihood: first measurement") on the
# data of its smoke measurement: photos 001-040 and the USC-SIPI textures and aerials, held out 041, 045, 049.
POLYPHASE=("$D"/photos/0[0-3]?.png "$D"/photos/040.png "$D"/usc-sipi/textures "$D"/usc-sipi/aerials
           --eval "$D"/photos/041.png --eval "$D"/photos/045.png --eval "$D"/photos/049.png
           --preset photo-polyphase --crop 32 --batch-size 32 --threads 1)

# The two-level polyphase likelihood (photo-multiscale) on 64x64 crops, held out by the default split (every
# 20th image of each source; no measurement set is trained on), then the same with generated synthetic images
# (flat areas, gradients, text, charts, screens: bbcodec/training/synthetic.py). Times on one thread of the
# 2-core machine: 56 min for stage 1 (0.55 s a step).
MULTISCALE=("$D"/photos/0[0-3]?.png "$D"/photos/040.png "$D"/usc-sipi/textures "$D"/usc-sipi/aerials
            --preset photo-multiscale --crop 64 --batch-size 16 --eval-every 250 --ema 0.999 --threads 1)

resuming() {  # resuming OUT: --resume if a run in OUT was cut off (it has a checkpoint)
    if [ -e "$1/checkpoint.safetensors" ]; then echo --resume; fi
}

multiscale() {  # multiscale RUNS TAG [OPTION...]: stage 1 natural images, stage 2 with synthetic:2000 from
    local runs=$1 tag=$2                        # stage 1's weights; OPTIONs (e.g. --set FIELD=VALUE) to both;
    shift 2                                     # the same command again continues a stage that was cut off
    if ! ls "$runs/$tag-c64/$tag-c64"-*.safetensors >/dev/null 2>&1; then  # stage 1 not finished yet
        bbcodec train "${MULTISCALE[@]}" "$@" --steps 6000 --out "$runs/$tag-c64" --name "$tag-c64" \
            $(resuming "$runs/$tag-c64")
    fi
    if ! ls "$runs/$tag-syn/$tag-syn"-*.safetensors >/dev/null 2>&1; then
        bbcodec train "${MULTISCALE[@]}" "$@" synthetic:2000 --steps 4000 --lr 1e-3 \
            --init-from "$(ls "$runs/$tag-c64/$tag-c64"-*.safetensors)" --out "$runs/$tag-syn" --name "$tag-syn" \
            $(resuming "$runs/$tag-syn")
    fi
}

longer() {  # longer RUNS TAG [OPTION...]: TAG-c64 (multiscale's stage 1) trained 10,000 steps more on the same
    local runs=$1 tag=$2                       # data at half its peak rate, then multiscale's synthetic stage from it
    shift 2
    if ! ls "$runs/$tag-long/$tag-long"-*.safetensors >/dev/null 2>&1; then
        bbcodec train "${MULTISCALE[@]}" "$@" --steps 10000 --lr 1e-3 \
            --init-from "$(ls "$runs/$tag-c64/$tag-c64"-*.safetensors)" --out "$runs/$tag-long" --name "$tag-long" \
            $(resuming "$runs/$tag-long")
    fi
    if ! ls "$runs/$tag-long-syn/$tag-long-syn"-*.safetensors >/dev/null 2>&1; then
        bbcodec train "${MULTISCALE[@]}" "$@" synthetic:2000 --steps 4000 --lr 1e-3 \
            --init-from "$(ls "$runs/$tag-long/$tag-long"-*.safetensors)" --out "$runs/$tag-long-syn" \
            --name "$tag-long-syn" $(resuming "$runs/$tag-long-syn")
    fi
}

# The top-down ResNet VAE (photo-topdown: multiscale-linear's likelihood under bidirectional inference) on
# stage 1 of multiscale's data and schedule, so that its curve compares with msl-c64's step for step. OPTIONs
# make its twins: --float (float residual blocks), --set binary_activations=true (sign activations).
topdown() {  # topdown RUNS NAME [OPTION...]
    local runs=$1 name=$2
    shift 2
    bbcodec train "${MULTISCALE[@]}" --preset photo-topdown "$@" --steps 6000 --out "$runs/$name" --name "$name"
}

# Flow++ (bbcodec/models/flowpp.py; issue 22, not shipped: a density model) on the natural images at 32x32,
# binary coupling networks or (--float) their float twin; 1,500 steps at 2-3 s a step on one thread.
flowpp() {  # flowpp RUNS NAME [OPTION...]
    local runs=$1 name=$2
    shift 2
    bbcodec train "${NATURAL[@]}" --preset flowpp "$@" --lr 1e-3 --steps 1500 --eval-every 250 \
        --out "$runs/flowpp/$name" --name "flowpp-$name" $(resuming "$runs/flowpp/$name")
}

case "${1:-}" in
    default)  # since 2026-12-07 (bench/README.md, "A new default"): multiscale-residual, exported at grid 2^-1
        multiscale "${2:-runs}" mslr --set linear_prediction=true --set residual_coupling=true
        bbcodec export "${2:-runs}/mslr-syn/checkpoint.safetensors" -o bbcodec/zoo/default.safetensors --grid-bits 1
        plot bbcodec/zoo/default-training.png "${2:-runs}/mslr-c64/log.jsonl" "${2:-runs}/mslr-syn/log.jsonl"
        ;;
    default-v2) natural default "" 6 float32 default-v2 ;;    # the default of 2026-11-24 to 2026-12-07
    default-v2-float) natural default-float --float 8 float16 default-v2-float ;;
    calibrations)  # bbcodec/zoo/calibrations.json: the default's calibration 0 (2026-12-08), for small images;
        # --write appends only a calibration not shipped yet (bench/README.md, "Calibrations shipped with a model")
        python bench/calibration_presets.py "$D"/cifar10-subset/cifar10_subset_uint8_nhwc.npz --fit 2048 --files 200 \
            --json bench/results/calibration_preset_cifar.json --write
        ;;
    mnist)  # since 2026-12-07: the two-level polyphase likelihood, narrower, held-out digits from the training set
        bbcodec train "$D"/mnist/train-images-idx3-ubyte.gz --preset photo-multiscale --set hidden_channels=32 \
            --set latent_channels=8 --set linear_prediction=true --crop 28 --batch-size 64 --steps 3000 \
            --eval-every 250 --threads 1 --out "${2:-runs}/mnist-ms/run" --name mnist-ms
        bbcodec export "${2:-runs}/mnist-ms/run/checkpoint.safetensors" -o bbcodec/zoo/mnist.safetensors
        ;;
    mnist-v2)  # the mnist model of 2026-11-24 to 2026-12-07
        bbcodec train "$D"/mnist/train-images-idx3-ubyte.gz --eval "$D"/mnist/t10k-images-idx3-ubyte.gz \
            --preset small --crop 28 --batch-size 64 --steps 3000 --threads 1 --out runs/mnist --name mnist
        bbcodec export runs/mnist/checkpoint.safetensors -o bbcodec/zoo/mnist-v2.safetensors --grid-bound 8
        ;;
    photo-polyphase)  # one stage, checkpointed every 250 steps; rerun with --resume after an interruption
        bbcodec train "${POLYPHASE[@]}" --steps 8000 --eval-every 250 --out "${2:-runs/photo-polyphase}" \
            --name photo-polyphase "${@:3}"
        ;;
    multiscale) multiscale "${2:-runs}" ms ;;
    multiscale-wide) multiscale "${2:-runs}" msw --set context_channels=64 ;;  # context networks twice as wide
    multiscale-linear) multiscale "${2:-runs}" msl --set linear_prediction=true ;;  # interpolation + correction
    multiscale-residual) multiscale "${2:-runs}" mslr --set linear_prediction=true --set residual_coupling=true ;;
    multiscale-residual-longer)  # (not shipped) the default's stage 1 for 16,000 steps in all, then its stage 2
        longer "${2:-runs}" mslr --set linear_prediction=true --set residual_coupling=true ;;
    multiscale-linear-float) multiscale "${2:-runs}" mslf --set linear_prediction=true --float ;;  # msl's float twin
    multiscale-residual-float)  # mslr's float twin
        multiscale "${2:-runs}" mslrf --set linear_prediction=true --set residual_coupling=true --float ;;
    topdown) topdown "${2:-runs}" td-c64 "${@:3}" ;;
    topdown-float) topdown "${2:-runs}" tdf-c64 --float "${@:3}" ;;
    topdown-signs) topdown "${2:-runs}" tds-c64 --set binary_activations=true "${@:3}" ;;
    flowpp) flowpp "${2:-runs}" binary "${@:3}" ;;
    flowpp-float) flowpp "${2:-runs}" float --float "${@:3}" ;;
    flowpp-deep) flowpp "${2:-runs}" deep --set blocks_per_net=4 "${@:3}" ;;  # twice the binary blocks a network
    *) echo "usage: bash bench/train_zoo.sh default|calibrations|default-v2|default-v2-float|mnist|mnist-v2|photo-polyphase|multiscale|multiscale-wide|multiscale-linear|multiscale-linear-float|multiscale-residual|multiscale-residual-float|multiscale-residual-longer|topdown|topdown-float|topdown-signs|flowpp|flowpp-float|flowpp-deep" >&2; exit 2 ;;
esac
