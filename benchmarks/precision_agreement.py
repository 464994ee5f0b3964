"""Do the shipped Breakout agents choose the same actions in bfloat16 as in float32?

    python benchmarks/precision_agreement.py                          # this machine's bfloat16 (oneDNN where it has it)
    TF_ENABLE_ONEDNN_OPTS=0 python benchmarks/precision_agreement.py  # TensorFlow's own (emulated) bfloat16 kernels

Records --states histories that the float32 agent meets while playing (5 % random actions so that it does not
replay one game), then compares the greedy action of the same weights in both precisions on every one of them:
the share that agrees, the largest change of a Q-value (DQN) or probability (A3C), and, where they disagree, how
close the two best float32 choices were. The test suite holds the same comparison on fewer states.

    python benchmarks/precision_agreement.py --updates 2000   # training: same start, same minibatches, both precisions
    python benchmarks/precision_agreement.py --gradients 200 [--weights FILE]   # one gradient, both precisions
"""
import argparse
import os

import numpy as np

from common import load_module  # noqa: E402  (benchmarks/common.py)


def dqn_world():
    """The DQN chapter's environment.py: the game, pre_processing, the histories, FIRE and ALE_ACTION."""
    return load_module("3-atari/1-breakout-dqn/environment.py")


def dqn_states(agent, count, rng):
    world = dqn_world()
    env = world.make_env()
    observe, lives = world.start_game(env, agent.no_op_steps, seed=0)
    history, dead, states = world.new_history(world.pre_processing(observe)), False, []
    while len(states) < count:
        states.append(history)
        action = world.FIRE if dead else (agent.get_action(history)[0] if rng.random() > 0.05 else rng.integers(3))
        observe, _, terminated, truncated, info = env.step(world.ALE_ACTION[action])
        frame, dead, lives = world.pre_processing(observe), info["lives"] < lives, info["lives"]
        history = world.new_history(frame) if dead else world.next_history_of(history, frame)
        if terminated or truncated:
            observe, lives = world.start_game(env, agent.no_op_steps)
            history, dead = world.new_history(world.pre_processing(observe)), False
    env.close()
    return np.stack(states)


def a3c_states(model, count, rng):
    """Histories of the A3C chapter's vector games (environment.py's VectorBreakout), as the float32 model plays."""
    games = load_module("3-atari/2-breakout-a3c/environment.py").VectorBreakout(1, seed=0)
    states = []
    observation = games.reset()
    while len(states) < count:
        states.append(observation[0])
        policy = model(observation, training=False)[0].numpy()
        observation = games.step(policy.argmax(axis=1) if rng.random() > 0.05 else rng.integers(0, 3, 1))[0]
    games.close()
    return np.stack(states)


def compare(name, outputs32, outputs16):
    differ = outputs32.argmax(axis=1) != outputs16.argmax(axis=1)
    best_two = np.sort(outputs32, axis=1)[:, -2:]
    gaps = best_two[differ, 1] - best_two[differ, 0]
    print(f"  {name}: {100 * (1 - differ.mean()):.2f} % of {len(differ)} states agree; largest change "
          f"{np.abs(outputs32 - outputs16).max():.4f}; float32 gap of the two best where they differ: "
          f"{gaps.max() if len(gaps) else 0:.4f} at most")


def teacher_memory(dqn):
    """A replay memory of real frames: the shipped agent plays 3000 steps (5 % random) into it, with its rewards."""
    teacher = dqn.DQNAgent(memory_size=1)
    teacher.model.load_weights(dqn.TRAINED)
    teacher.epsilon = 0.05
    world = dqn_world()
    memory = load_module("3-atari/1-breakout-dqn/frame_memory.py").ReplayMemory(5000)
    env = world.make_env()
    observe, lives = world.start_game(env, teacher.no_op_steps, seed=0)
    frame, dead = world.pre_processing(observe), False
    history = world.new_history(frame)
    memory.start_history(frame)
    for _ in range(3000):
        action = world.FIRE if dead else teacher.get_action(history)[0]
        observe, reward, terminated, truncated, info = env.step(world.ALE_ACTION[action])
        frame, dead, lives = world.pre_processing(observe), terminated or info["lives"] < lives, info["lives"]
        memory.append(action, np.clip(reward, -1, 1), frame, dead)
        history = world.new_history(frame) if dead else world.next_history_of(history, frame)
        if terminated or truncated:
            observe, lives = world.start_game(env, teacher.no_op_steps)
            frame, dead = world.pre_processing(observe), False
            history = world.new_history(frame)
            memory.start_history(frame)
    env.close()
    return memory


def same_updates(dqn, updates, rng):
    """From the same first weights, the same minibatches in both precisions: how far apart do two Breakout DQNs
    drift, in their Q-values and their losses, as they train? (Real frames from teacher_memory; training starts
    from fresh seeded networks.)"""
    import keras
    memory = teacher_memory(dqn)
    np.random.seed(1)
    batches = [memory.sample(32) for _ in range(updates)]
    probe = dqn.to_network_input(memory.stacks(np.arange(100, 600)))
    agents = {}
    for precision in ("float32", "bfloat16"):
        keras.utils.set_random_seed(0)
        agents[precision] = dqn.DQNAgent(memory_size=1, precision=precision)
    print(f"  {updates} minibatches of 32, the same ones, from the same first weights (target network fixed):")
    print("  | updates | loss float32 | loss bfloat16 | mean max Q float32 | mean max Q bfloat16 | mean abs Q difference |")
    print("  |---:|---:|---:|---:|---:|---:|")
    losses = {p: [] for p in agents}
    for step, batch in enumerate(batches, 1):
        for precision, agent in agents.items():
            losses[precision].append(float(agent.train_step(*batch)))
        if step in (1, 10, 100) or step % 500 == 0:
            q = {p: a.model(probe).numpy() for p, a in agents.items()}
            print(f"  | {step} | {np.mean(losses['float32'][-50:]):.5f} | {np.mean(losses['bfloat16'][-50:]):.5f} | "
                  f"{q['float32'].max(1).mean():.4f} | {q['bfloat16'].max(1).mean():.4f} | "
                  f"{np.abs(q['float32'] - q['bfloat16']).mean():.4f} |", flush=True)


def gradient_of(dqn, agent, batch):
    """The gradient that the chapter's train_step would apply (same targets, same Huber loss), flattened, per layer."""
    import tensorflow as tf
    states, actions, rewards, next_states, deads = (tf.constant(x) for x in batch)
    next_q = agent.target_model(dqn.to_network_input(next_states), training=False)
    targets = dqn.dqn_targets(rewards, deads, next_q, agent.discount_factor)
    with tf.GradientTape() as tape:
        q_values = agent.model(dqn.to_network_input(states), training=True)
        chosen_q = tf.reduce_sum(q_values * tf.one_hot(actions, agent.action_size), axis=1)
        loss = dqn.huber_loss(targets, chosen_q)
    return [g.numpy().ravel() for g in tape.gradient(loss, agent.model.trainable_variables)]


def same_gradients(dqn, count, weights):
    """Same weights, same minibatch: how far is bfloat16's gradient from float32's, next to how far the gradients
    of two different minibatches are from each other anyway (the noise that SGD lives with)?"""
    memory = teacher_memory(dqn)
    np.random.seed(2)
    batches = [memory.sample(32) for _ in range(count + 1)]
    load_weights = load_module("3-atari/1-breakout-dqn/plumbing.py").load_weights
    agents = {}
    for precision in ("float32", "bfloat16"):
        agents[precision] = dqn.DQNAgent(memory_size=1, precision=precision)
        load_weights(agents[precision].model, weights, "give --weights a Breakout DQN weights file")
        agents[precision].update_target_model()
    cosine = lambda a, b: float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))   # noqa: E731
    names = [v.path for v in agents["float32"].model.trainable_variables]
    layer_error, same, other, norm_ratio = [], [], [], []
    previous, sum32, sum16 = None, None, None
    for index, batch in enumerate(batches):
        g32 = gradient_of(dqn, agents["float32"], batch)
        flat32 = np.concatenate(g32)
        if previous is not None:
            other.append(cosine(flat32, previous))
        previous = flat32
        if index == count:                          # the last minibatch only serves the comparison above
            break
        g16 = gradient_of(dqn, agents["bfloat16"], batch)
        flat16 = np.concatenate(g16)
        sum32 = g32 if sum32 is None else [s + g for s, g in zip(sum32, g32)]
        sum16 = g16 if sum16 is None else [s + g for s, g in zip(sum16, g16)]
        layer_error.append([np.linalg.norm(a - b) / (np.linalg.norm(a) + 1e-30) for a, b in zip(g32, g16)])
        same.append(cosine(flat32, flat16))
        norm_ratio.append(np.linalg.norm(flat16) / np.linalg.norm(flat32))
    same, other, layer_error = np.array(same), np.array(other), np.array(layer_error)
    print(f"  {weights}: {count} minibatches of 32 (real frames), gradients of the same weights")
    print(f"  cosine(float32, bfloat16), same minibatch: median {np.median(same):.4f}, lowest {same.min():.4f}; "
          f"norm bfloat16 / float32: median {np.median(norm_ratio):.4f}")
    print(f"  cosine(float32, float32), two different minibatches: median {np.median(other):.4f}, "
          f"highest {other.max():.4f}")
    print(f"  relative error |g16 - g32| / |g32| per variable: one minibatch, median (largest); the mean gradient "
          f"over the {count} (an error that only adds noise shrinks here, a bias would not)")
    for name, column, mean32, mean16 in zip(names, layer_error.T, sum32, sum16):
        bias = np.linalg.norm(mean16 - mean32) / (np.linalg.norm(mean32) + 1e-30)
        print(f"    {name.split('/', 1)[-1]:16s} {np.median(column):.4f} ({column.max():.4f})   mean gradient {bias:.4f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--states", type=int, default=2000)
    parser.add_argument("--updates", type=int, default=0,
                        help="instead: train two fresh DQNs, one per precision, on the same N minibatches")
    parser.add_argument("--gradients", type=int, default=0,
                        help="instead: compare the two precisions' gradients of the same weights on N minibatches")
    parser.add_argument("--weights", default=None, help="with --gradients: a Breakout DQN weights file "
                                                          "(default: the shipped agent)")
    args = parser.parse_args()
    print(f"TF_ENABLE_ONEDNN_OPTS={os.environ.get('TF_ENABLE_ONEDNN_OPTS', '(default)')}")
    rng = np.random.default_rng(0)
    dqn = load_module("3-atari/1-breakout-dqn/breakout_dqn.py")
    if args.updates:
        return same_updates(dqn, args.updates, rng)
    if args.gradients:
        return same_gradients(dqn, args.gradients, args.weights or dqn.TRAINED)
    agents = {p: dqn.DQNAgent(memory_size=1, precision=p) for p in ("float32", "bfloat16")}
    for agent in agents.values():
        agent.model.load_weights(dqn.TRAINED)
    agents["float32"].epsilon = 0.0
    states = dqn.to_network_input(dqn_states(agents["float32"], args.states, rng))
    compare("Breakout DQN", *(agents[p].model(states).numpy() for p in ("float32", "bfloat16")))
    a3c = load_module("3-atari/2-breakout-a3c/breakout_a3c.py")
    models = {p: a3c.build_model(p) for p in ("float32", "bfloat16")}
    for model in models.values():
        model.load_weights(a3c.TRAINED)
    states = a3c_states(models["float32"], args.states, rng)
    compare("Breakout A3C", *(models[p](states, training=False)[0].numpy() for p in ("float32", "bfloat16")))


if __name__ == "__main__":
    main()
