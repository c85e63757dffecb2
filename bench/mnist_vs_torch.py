"""The README's MNIST program (784-128-10, Adam, batch 32, 5 epochs) in pynn and the same model
in PyTorch, one after the other in one process: test accuracy and seconds per epoch.

    PYNN_DATA_DIR=../shared/data python bench/mnist_vs_torch.py [--epochs 5] [--threads 2]

PyTorch gets the same data, initialisation scheme (Glorot uniform, zero bias, as Keras), Adam
settings (lr 1e-3, eps 1e-7), batch size, shuffling each epoch and thread count; its loop is
the usual zero_grad / forward / cross_entropy / backward / step.
"""
import argparse
import time

import numpy as np

import cnn_core
import pynn


def run_pynn(data, epochs):
    (x_train, y_train), (x_test, y_test) = data
    pynn.utils.set_random_seed(0)
    model = pynn.Sequential([
        pynn.layers.Flatten(input_shape=(28, 28)),
        pynn.layers.Dense(128, activation="relu"),
        pynn.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.fit(x_train, y_train, epochs=1, verbose=0)
        times.append(time.perf_counter() - t0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    return accuracy, times


def run_torch(torch, data, epochs):
    (x_train, y_train), (x_test, y_test) = data
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    for layer in (model[1], model[3]):
        torch.nn.init.xavier_uniform_(layer.weight)
        torch.nn.init.zeros_(layer.bias)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    xt = torch.from_numpy(x_train.astype(np.float32))
    yt = torch.from_numpy(y_train.astype(np.int64))
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        perm = torch.randperm(xt.shape[0])
        for start in range(0, xt.shape[0], 32):
            idx = perm[start:start + 32]
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        times.append(time.perf_counter() - t0)
    with torch.inference_mode():
        logits = model(torch.from_numpy(x_test.astype(np.float32)))
    accuracy = float((logits.argmax(1).numpy() == y_test).mean())
    return accuracy, times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        cnn_core.set_num_threads(args.threads)
    threads = cnn_core.get_num_threads()
    (x_train, y_train), (x_test, y_test) = pynn.datasets.mnist.load_data()
    data = ((x_train / 255.0, y_train), (x_test / 255.0, y_test))
    print(f"MNIST 784-128-10, Adam, batch 32, {args.epochs} epochs, {threads} threads, "
          f"cnn_core kernel {cnn_core.build_info()['kernel']}")
    accuracy, times = run_pynn(data, args.epochs)
    print(f"pynn   test accuracy {accuracy:.4f}   s/epoch median {np.median(times):.3f} "
          f"(each: {', '.join(f'{t:.2f}' for t in times)})")
    try:
        import torch
    except ImportError:
        print("torch not installed: no comparison")
        return
    torch.set_num_threads(threads)
    t_accuracy, t_times = run_torch(torch, data, args.epochs)
    print(f"torch  test accuracy {t_accuracy:.4f}   s/epoch median {np.median(t_times):.3f} "
          f"(each: {', '.join(f'{t:.2f}' for t in t_times)})")
    print(f"pynn is {np.median(t_times) / np.median(times):.2f}x faster per epoch")


if __name__ == "__main__":
    main()
