"""Command line: ``python -m pynn demo`` (train and evaluate MNIST) and ``python -m pynn bench``.

The demo is the Keras MNIST program with only the import changed. Without MNIST files and
without a network it says so and trains on scikit-learn's bundled 8x8 digits instead (a real
dataset that needs no download); it never reports a made-up result.
"""
import argparse
import sys
import time


def _load_dataset(data_dir):
    """((x_train, y_train), (x_test, y_test), name): MNIST, or the bundled digits fallback."""
    import pynn
    from pynn.datasets import DatasetUnavailableError

    try:
        return pynn.datasets.mnist.load_data(path=data_dir), "MNIST"
    except DatasetUnavailableError as error:
        print(f"MNIST is not available here: {error}", file=sys.stderr)
        print("Falling back to scikit-learn's bundled 8x8 digits (1,797 images).",
              file=sys.stderr)
    try:
        return pynn.datasets.digits.load_data(), "digits (8x8)"
    except ImportError as error:
        raise SystemExit(
            "Neither MNIST nor the fallback dataset is available: put the MNIST IDX files in "
            "$PYNN_DATA_DIR/mnist or ~/.pynn/datasets/mnist, or install the fallback with "
            f"`pip install pynn[digits]` ({error})"
        ) from None


def demo(argv=None):
    parser = argparse.ArgumentParser(prog="python -m pynn demo",
                                     description="Train and evaluate the Keras MNIST MLP or convnet.")
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp",
                        help="mlp: Flatten-Dense(128)-Dense(10), the Keras beginner program "
                             "(default); cnn: Keras' MNIST convnet example, "
                             "Conv(32)-Pool-Conv(64)-Pool-Dropout(0.5)-Dense(10)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="default: 5 for mlp, 2 for cnn")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: 32 for mlp, 128 for cnn")
    parser.add_argument("--data-dir", default=None,
                        help="folder with the MNIST IDX files (default: $PYNN_DATA_DIR/mnist, "
                             "then ~/.pynn/datasets/mnist, then download)")
    parser.add_argument("--verbose", type=int, default=None, choices=(0, 1, 2),
                        help="progress: 1 a bar per epoch, 2 one line per epoch "
                             "(default: 1 on a terminal, 2 otherwise)")
    args = parser.parse_args(argv)
    cnn = args.model == "cnn"
    if args.epochs is None:
        args.epochs = 2 if cnn else 5
    if args.batch_size is None:
        args.batch_size = 128 if cnn else 32
    if args.epochs < 1 or args.batch_size < 1:
        parser.error("--epochs and --batch-size must be >= 1")
    verbose = args.verbose if args.verbose is not None else (1 if sys.stdout.isatty() else 2)

    import cnn_core
    import pynn

    info = cnn_core.build_info()
    print(f"pynn {pynn.__version__}: cnn_core kernel {info['kernel']}, OpenMP {info['openmp']}, "
          f"{info['num_threads']} thread(s)")
    ((x_train, y_train), (x_test, y_test)), name = _load_dataset(args.data_dir)
    print(f"dataset: {name}, {len(x_train)} training / {len(x_test)} test images of "
          f"{x_train.shape[1:]}")

    # The Keras programs, unchanged but for the import.
    x_train, x_test = x_train / 255.0, x_test / 255.0
    pynn.utils.set_random_seed(0)
    if cnn:
        layers = pynn.layers
        x_train, x_test = x_train[..., None], x_test[..., None]  # (n, h, w, 1) channels_last
        model = pynn.Sequential([
            layers.Input(shape=x_train.shape[1:]),
            layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
            layers.MaxPooling2D(pool_size=(2, 2)),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ])
    else:
        model = pynn.Sequential([
            pynn.layers.Flatten(input_shape=x_train.shape[1:]),
            pynn.layers.Dense(128, activation='relu'),
            pynn.layers.Dense(10, activation='softmax'),
        ])
    model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    started = time.perf_counter()
    model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size, verbose=verbose)
    train_seconds = time.perf_counter() - started
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    print(f"test loss {loss:.4f}, test accuracy {accuracy:.4f} "
          f"({train_seconds / args.epochs:.2f} s per epoch, {args.epochs} epochs)")
    return 0


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"demo": demo, "bench": None}
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in commands:
        print("usage: python -m pynn {demo,bench} [options]\n"
              "  demo   train and evaluate the Keras MNIST MLP or convnet "
              "(python -m pynn demo --help)\n"
              "  bench  pynn vs the NumPy reference vs PyTorch, side by side "
              "(python -m pynn bench --help)")
        return 0 if argv and argv[0] in ("-h", "--help") else 2
    if argv[0] == "bench":
        from pynn.benchmark import main as bench_main

        return bench_main(argv[1:])
    return demo(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
