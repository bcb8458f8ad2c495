# Copyright 2021 Google LLC
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     https://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

# pylint: disable=invalid-name
"""Building Blocks for Gradient-based Trajectory Optimizers.

Notation:

- x denotes state, a 1D numpy array of shape [n]
- u denotes control, a 1D numpy array of shape [m]
- t denotes time, an scalar integer time index.

A Trajectory optimization problem is specified via three components:

(1) A numpy scalar-valued cost function with signature,
              c = cost(x, u, t, *args)

(2) A numpy vector-valued dynamics function with signature,
              xdot = dynamics(x, u, t, *args)

    where xdot is state time derivative of shape [n].

(3) The initial state x0, a 1D numpy array of shape [n].

The problem is to minimize over a sequence u[0], u[1]...u[T-1],

    sum_{t=0}^{T-1} cost(x[t], u[t], t) + cost(x[T], np.zeros(m), T)

    subject to:

      x[t+1] = dynamics(x[t], u[t], t)
      x[0] = x0 is given.
"""
#
# VENDORED for metalqr's benchmarks (benchmarks/bench_ilqr.py) from
# https://github.com/google/trajax, commit c94a637c5a397b3d4100153f25b4b165507b5b20, trajax/optimizers.py
# (Apache License 2.0; see benchmarks/peers/LICENSE-trajax). trajax is not on PyPI.
# Trimmed to the iLQR solve and the functions it calls; changes, all marked "metalqr:":
#  - ``ilqr`` keeps only the default ``vjp_method='tvlqr'`` path and runs ``_ilqr_template``
#    under the same ``jit(static_argnums=(0, 1))`` as trajax, without the ``custom_vjp``
#    wrapper (differentiation through the solver is not benchmarked; the forward solve is
#    unchanged);
#  - imports point at the vendored ``tvlqr``.

from __future__ import absolute_import
from __future__ import division
from __future__ import print_function

from functools import partial  # pylint: disable=g-importing-member

import jax
from jax import custom_derivatives
from jax import hessian
from jax import jacobian
from jax import jit
from jax import lax
from jax import vmap
import jax.numpy as np
from .tvlqr import tvlqr  # metalqr: vendored module

# Convenience routine to pad zeros for vectorization purposes.
pad = lambda A: np.vstack((A, np.zeros((1,) + A.shape[1:])))


def vectorize(fun, argnums=3):
  """Returns a jitted and vectorized version of the input function.

  See https://jax.readthedocs.io/en/latest/jax.html#jax.vmap

  Args:
    fun: a numpy function f(*args) to be mapped over.
    argnums: number of leading arguments of fun to vectorize.

  Returns:
    Vectorized/Batched function with arguments corresponding to fun, but extra
    batch dimension in axis 0 for first argnums arguments (x, u, t typically).
    Remaining arguments are not batched.
  """

  def vfun(*args):
    _fun = lambda tup, *margs: fun(*(margs + tup))
    return vmap(
        _fun, in_axes=(None,) + (0,) * argnums)(args[argnums:], *args[:argnums])

  return vfun


def linearize(fun, argnums=3):
  """Vectorized gradient or jacobian operator.

  Args:
    fun: numpy scalar or vector function with signature fun(x, u, t, *args).
    argnums: number of leading arguments of fun to vectorize.

  Returns:
    A function that evaluates Gradients or Jacobians with respect to states and
    controls along a trajectory, e.g.,

        dynamics_jacobians = linearize(dynamics)
        cost_gradients = linearize(cost)
        A, B = dynamics_jacobians(X, pad(U), timesteps)
        q, r = cost_gradients(X, pad(U), timesteps)

        where,
          X is [T+1, n] state trajectory,
          U is [T, m] control sequence (pad(U) pads a 0 row for convenience),
          timesteps is typically np.arange(T+1)

          and A, B are Dynamics Jacobians wrt state (x) and control (u) of
          shape [T+1, n, n] and [T+1, n, m] respectively;

          and q, r are Cost Gradients wrt state (x) and control (u) of
          shape [T+1, n] and [T+1, m] respectively.

          Note: due to padding of U, last row of A, B, and r may be discarded.
  """
  jacobian_x = jacobian(fun)
  jacobian_u = jacobian(fun, argnums=1)

  def linearizer(*args):
    return jacobian_x(*args), jacobian_u(*args)

  return vectorize(linearizer, argnums)


def quadratize(fun, argnums=3):
  """Vectorized Hessian operator for a scalar function.

  Args:
    fun: numpy scalar with signature fun(x, u, t, *args).
    argnums: number of leading arguments of fun to vectorize.

  Returns:
    A function that evaluates Hessians with respect to state and controls along
    a trajectory, e.g.,

      Q, R, M = quadratize(cost)(X, pad(U), timesteps)

     where,
          X is [T+1, n] state trajectory,
          U is [T, m] control sequence (pad(U) pads a 0 row for convenience),
          timesteps is typically np.arange(T+1)

    and,
          Q is [T+1, n, n] Hessian wrt state: partial^2 fun/ partial^2 x,
          R is [T+1, m, m] Hessian wrt control: partial^2 fun/ partial^2 u,
          M is [T+1, n, m] mixed derivatives: partial^2 fun/partial_x partial_u
  """
  hessian_x = hessian(fun)
  hessian_u = hessian(fun, argnums=1)
  hessian_x_u = jacobian(jax.grad(fun), argnums=1)

  def quadratizer(*args):
    return hessian_x(*args), hessian_u(*args), hessian_x_u(*args)

  return vectorize(quadratizer, argnums)


def _rollout(dynamics, U, x0, *args):
  def dynamics_for_scan(x, ut):
    u, t = ut
    x_next = dynamics(x, u, t, *args)
    return x_next, x_next

  return np.vstack(
      (x0, lax.scan(dynamics_for_scan, x0, (U, np.arange(U.shape[0])))[1]))


def evaluate(cost, X, U, *args):
  """Evaluates cost(x, u, t) along a trajectory.

  Args:
    cost: cost_fn with signature cost(x, u, t, *args)
    X: (T, n) state trajectory.
    U: (T, m) control sequence.
    *args: args for cost_fn

  Returns:
    objectives: (T, ) array of objectives.
  """
  timesteps = np.arange(X.shape[0])
  return vectorize(cost)(X, U, timesteps, *args)


def adjoint(A, B, q, r):
  """Solve adjoint equations.

  Args:
      A: dynamics Jacobians with respect to state.
      B: dynamics Jacobians with respect to control.
      q: cost gradients with respect to state.
      r: cost gradients with respect to control.

  Returns:
      gradient, adjoints, final adjoint variable.

  Usage:
    q, r = linearize(cost)(X, pad(U), timesteps)
    A, B = linearize(dynamics)(X, pad(U), np.arange(T + 1))
    gradient, adjoints, _ = adjoint(A, B, q, r)
  """

  n = q.shape[1]
  T = q.shape[0] - 1
  m = r.shape[1]
  P = np.zeros((T, n))
  g = np.zeros((T, m))

  def body(p, t):  # backward recursion of Adjoint equations.
    g = r[t] + np.matmul(B[t].T, p)
    p = np.matmul(A[t].T, p) + q[t]
    return p, (p, g)

  p, (P, g) = lax.scan(body, q[T], np.arange(T - 1, -1, -1))
  return np.flipud(g), np.vstack((np.flipud(P[:T - 1]), q[T])), p


@partial(jit, static_argnums=(0,))
def ddp_rollout(dynamics, X, U, K, k, alpha, *args):
  """Rollouts used in Differential Dynamic Programming.

  Args:
    dynamics: function with signature dynamics(x, u, t, *args).
    X: [T+1, n] current state trajectory.
    U: [T, m] current control sequence.
    K: [T, m, n] state feedback gains.
    k: [T, m] affine terms in state feedback.
    alpha: line search parameter.
    *args: passed to dynamics.

  Returns:
    Xnew, Unew: updated state trajectory and control sequence, via:

      del_u = alpha * k[t] + np.matmul(K[t], Xnew[t] - X[t])
      u = U[t] + del_u
      x = dynamics(Xnew[t], u, t)
  """
  n = X.shape[1]
  T, m = U.shape
  Xnew = np.zeros((T + 1, n))
  Unew = np.zeros((T, m))
  Xnew = Xnew.at[0].set(X[0])

  def body(t, inputs):
    Xnew, Unew = inputs
    del_u = alpha * k[t] + np.matmul(K[t], Xnew[t] - X[t])
    u = U[t] + del_u
    x = dynamics(Xnew[t], u, t, *args)
    Unew = Unew.at[t].set(u)
    Xnew = Xnew.at[t + 1].set(x)
    return Xnew, Unew

  return lax.fori_loop(0, T, body, (Xnew, Unew))


@partial(jit, static_argnums=(0, 1))
def line_search_ddp(cost,
                    dynamics,
                    X,
                    U,
                    K,
                    k,
                    obj,
                    cost_args=(),
                    dynamics_args=(),
                    alpha_0=1.0,
                    alpha_min=0.00005):
  """Performs line search with respect to DDP rollouts."""

  obj = np.where(np.isnan(obj), np.inf, obj)
  costs = partial(evaluate, cost)
  total_cost = lambda X, U, *margs: np.sum(costs(X, pad(U), *margs))

  def line_search(inputs):
    """Line search to find improved control sequence."""
    _, _, _, alpha = inputs
    Xnew, Unew = ddp_rollout(dynamics, X, U, K, k, alpha, *dynamics_args)
    obj_new = total_cost(Xnew, Unew, *cost_args)
    alpha = 0.5 * alpha
    obj_new = np.where(np.isnan(obj_new), obj, obj_new)

    # Only return new trajs if leads to a strict cost decrease
    X_return = np.where(obj_new < obj, Xnew, X)
    U_return = np.where(obj_new < obj, Unew, U)

    return X_return, U_return, np.minimum(obj_new, obj), alpha

  return lax.while_loop(
      lambda inputs: np.logical_and(inputs[2] >= obj, inputs[3] > alpha_min),
      line_search, (X, U, obj, alpha_0))


@jit
def project_psd_cone(Q, delta=0.0):
  """Projects to the cone of positive semi-definite matrices.

  Args:
    Q: [n, n] symmetric matrix.
    delta: minimum eigenvalue of the projection.

  Returns:
    [n, n] symmetric matrix projection of the input.
  """
  S, V = np.linalg.eigh(Q)
  S = np.maximum(S, delta)
  Q_plus = np.matmul(V, np.matmul(np.diag(S), V.T))
  return 0.5 * (Q_plus + Q_plus.T)


def ilqr(cost,
         dynamics,
         x0,
         U,
         maxiter=100,
         grad_norm_threshold=1e-4,
         relative_grad_norm_threshold=0.0,
         obj_step_threshold=0.0,
         inputs_step_threshold=0.0,
         make_psd=False,
         psd_delta=0.0,
         alpha_0=1.0,
         alpha_min=0.00005,
         vjp_method='tvlqr',
         vjp_options=None):
  """Iterative Linear Quadratic Regulator.

  This method supports differentiation of the (X, U) outputs with respect
  to any parameters closed over in the cost function.

  Note that if you attempt to differentiate with respect to either
  inputs that are not closed over in the cost, or outputs other than (X, U),
  there will be no warning.

  Future implementations will support the differentiation of (X, U, obj)
  with respect to x0 and the parameters closed over in either the cost
  or dynamics functions.

  Optimization terminates if any one these conditions is true:
   1) Reached maximum iteration `maxiter`.
   2) The line-search step, relative to a full step, was less than `alpha_min`.
   3) The norm of the gradient is less than `grad_norm_threshold` or
      `relative_grad_norm_threshold` times one plus the gradient norm at the
      initial guess (1 + norm(grad(U_0))), whichever is the larger threshold.
   4) The norm of the step taken in the input (controls) space is less than one
      plus the norm of the current control inputs (1 + norm(U)) times
      `inputs_step_threshold`.
   5) The improvement in objective value is less than one plus the objective
      value (1 + abs(obj)) times `obj_step_threshold`.

  Args:
    cost:      cost(x, u, t) returns scalar.
    dynamics:  dynamics(x, u, t) returns next state (n, ) nd array.
    x0: initial_state - 1D np array of shape (n, ).
    U: initial_controls - 2D np array of shape (T, m).
    maxiter: maximum iterations.
    grad_norm_threshold: tolerance for stopping optimization.
    relative_grad_norm_threshold: tolerance on gradient norm for stopping
      optimization, relative to the gradient norm at the initial guess.
    obj_step_threshold: tolerance on objective value steps for stopping
      optimization, relative to the objective value itself.
    inputs_step_threshold: tolerance on input steps for stopping
      optimization, relative to the initial input (aka controls). iterations
      stop with the last iteration did not move the controls by more than this
      given fraction of the `initial_controls`.
    make_psd: whether to zero negative eigenvalues after quadratization.
    psd_delta: The delta value to make the problem PSD. Specifically, it will
      ensure that d^2c/dx^2 and d^2c/du^2, i.e. the hessian of cost function
      with respect to state and control are always positive definite.
    alpha_0: initial line search value.
    alpha_min: minimum line search value.
    vjp_method: One of ('explicit', 'cg', 'tvlqr'). Defaults to 'tvlqr'. The
      methods describe how the inv(hess) * v problem is solved in applying the
      implicit function theorem. The method 'explicit' refers to fully
      materializing the Hessian in memory and relying on jax.numpy.linalg.solve.
      The method 'cg' never materizlies the Hessian, and instead uses
      jax.scipy.sparse.linalg.cg and Hessian vector products. The method 'tvlqr'
      utilizes the structure of ilqr to solve inv(hess) * v with another
      call to tvlqr.
    vjp_options: A dictionary containing optional parameters to pass to the
      vjp implementation. The valid keys depend on the vjp_method. For
      method 'explicit', vjp_options accepts a key 'regularization' with a float
      value, which is added to the Hessian to improve numerical conditioning.
      For method 'cg', in addition to 'regularization', vjp_options also
      accepts keys ('tol', 'atol', 'maxiter'), which corresponds to the
      options of jax.scipy.sparse.linalg.cg. Method 'tvlqr' does not have any
      vjp_options.

  Returns:
    X: optimal state trajectory - nd array of shape (T+1, n).
      Is a differentiable output.
    U: optimal control trajectory - nd array of shape (T, m).
      Is a differentiable output.
    obj: final objective achieved.
    gradient: gradient at the solution returned.
    adjoints: associated adjoint variables.
    lqr: inputs to the final LQR solve.
    iteration: number of iterations upon convergence.
  """
  valid_vjp_methods = ('explicit', 'cg', 'tvlqr', 'tvlqr_experimental')
  if vjp_options is None:
    vjp_options = {}

  cost_fn, cost_args = custom_derivatives.closure_convert(cost, x0, U[0], 0)
  dynamics_fn, dynamics_args = custom_derivatives.closure_convert(
      dynamics, x0, U[0], 0)
  def new_cost_fn(x, u, t, bundled_cost_args):
    return cost_fn(x, u, t, *bundled_cost_args)
  def new_dynamics_fn(x, u, t, bundled_dynamics_args):
    return dynamics_fn(x, u, t, *bundled_dynamics_args)
  # _ilqr_tvlqr_vjp can only differentiate cost_args wrt the first argument of
  # the cost_fn. so, we bundle all the cost_args as one pytree. this is not
  # technically needed for dynamics_fn right now, since _ilqr_tvlqr_vjp cannot
  # diff wrt dynamics_args, but we do it anyways for consistency. future
  # implementations of _ilqr_tvlqr_vjp that want to diff wrt dynamics_args only
  # need to handle the first arg without loss of generality. in fact, we could
  # even ravel_pytree tuple(cost_args) here, and then all custom_vjp methods
  # would only need to reason about a vector argument wlog.

  # metalqr: only the default 'tvlqr' path, without its custom_vjp wrapper.
  if vjp_method != 'tvlqr':
    raise ValueError(f'vjp_method must be one of {valid_vjp_methods}, '
                     f'got {vjp_method} instead (metalqr vendors only \'tvlqr\').')
  return _ilqr_tvlqr_vjp(new_cost_fn, new_dynamics_fn, x0, U,
                         (tuple(cost_args),), (tuple(dynamics_args),),
                         maxiter, grad_norm_threshold,
                         relative_grad_norm_threshold, obj_step_threshold,
                         inputs_step_threshold, make_psd, psd_delta, alpha_0,
                         alpha_min, vjp_options)


# metalqr: trajax wraps this in jax.custom_vjp(nondiff_argnums=(0, 1)) as well.
@partial(jit, static_argnums=(0, 1))
def _ilqr_tvlqr_vjp(cost, dynamics, x0, U, cost_args, dynamics_args, maxiter,
                    grad_norm_threshold, relative_grad_norm_threshold,
                    obj_step_threshold, inputs_step_threshold, make_psd,
                    psd_delta, alpha_0, alpha_min, vjp_options):
  return _ilqr_template(cost, dynamics, x0, U, cost_args, dynamics_args,
                        maxiter, grad_norm_threshold,
                        relative_grad_norm_threshold, obj_step_threshold,
                        inputs_step_threshold, make_psd, psd_delta, alpha_0,
                        alpha_min, vjp_options)


def _ilqr_template(cost, dynamics, x0, U, cost_args, dynamics_args, maxiter,
                   grad_norm_threshold, relative_grad_norm_threshold,
                   obj_step_threshold, inputs_step_threshold, make_psd,
                   psd_delta, alpha_0, alpha_min, vjp_options):
  """Internal ilqr implementation. Not meant to be called directly."""

  del vjp_options

  T, _ = U.shape
  n = x0.shape[0]

  roll = partial(_rollout, dynamics)
  quadratizer = quadratize(cost)
  dynamics_jacobians = linearize(dynamics)
  cost_gradients = linearize(cost)
  evaluator = partial(evaluate, cost)
  psd = vmap(partial(project_psd_cone, delta=psd_delta))

  X = roll(U, x0, *dynamics_args)
  timesteps = np.arange(X.shape[0])
  obj = np.sum(evaluator(X, pad(U), *cost_args))

  def get_lqr_params(X, U):
    Q, R, M = quadratizer(X, pad(U), timesteps, *cost_args)

    Q = lax.cond(make_psd, Q, psd, Q, lambda x: x)
    R = lax.cond(make_psd, R, psd, R, lambda x: x)

    q, r = cost_gradients(X, pad(U), timesteps, *cost_args)
    A, B = dynamics_jacobians(X, pad(U), np.arange(T + 1), *dynamics_args)

    return (Q, q, R, r, M, A, B)

  c = np.zeros((T, n))  # assumes trajectory is always dynamically feasible.

  lqr = get_lqr_params(X, U)
  _, q, _, r, _, A, B = lqr
  gradient, adjoints, _ = adjoint(A, B, q, r)
  grad_norm_initial = np.linalg.norm(gradient)
  grad_norm_threshold = np.maximum(
      grad_norm_threshold,
      relative_grad_norm_threshold *
      np.where(np.isnan(grad_norm_initial), 1.0, grad_norm_initial + 1.0))

  def body(inputs):
    """Solves LQR subproblem and returns updated trajectory."""
    X, U, obj, alpha, gradient, adjoints, lqr, iteration, _, _ = inputs

    Q, q, R, r, M, A, B = lqr

    K, k, _, _ = tvlqr(Q, q, R, r, M, A, B, c)
    X_new, U_new, obj_new, alpha = line_search_ddp(cost, dynamics, X, U, K, k,
                                                   obj, cost_args,
                                                   dynamics_args, alpha_0,
                                                   alpha_min)
    gradient, adjoints, _ = adjoint(A, B, q, r)
    # print("Iteration=%d, Objective=%f, Alpha=%f, Grad-norm=%f\n" %
    #      (device_get(iteration), device_get(obj), device_get(alpha),
    #       device_get(np.linalg.norm(gradient))))

    lqr = get_lqr_params(X_new, U_new)
    U_step = np.linalg.norm(U_new - U)
    obj_step = np.abs(obj_new - obj)
    iteration = iteration + 1
    return X_new, U_new, obj_new, alpha, gradient, adjoints, lqr, iteration, obj_step, U_step

  def continuation_criterion(inputs):
    _, U_new, obj_new, alpha, gradient, _, _, iteration, obj_step, U_step = inputs
    grad_norm = np.linalg.norm(gradient)
    grad_norm = np.where(np.isnan(grad_norm), np.inf, grad_norm)

    still_improving_obj = obj_step > obj_step_threshold * (
        np.absolute(obj_new) + 1.0)
    still_moving_U = U_step > inputs_step_threshold * (
        np.linalg.norm(U_new) + 1.0)
    still_progressing = np.logical_and(still_improving_obj, still_moving_U)
    has_potential_to_improve = np.logical_and(grad_norm > grad_norm_threshold,
                                              still_progressing)

    return np.logical_and(
        iteration < maxiter,
        np.logical_and(has_potential_to_improve, alpha > alpha_min))

  X, U, obj, _, gradient, adjoints, lqr, it, _, _ = lax.while_loop(
      continuation_criterion, body,
      (X, U, obj, alpha_0, gradient, adjoints, lqr, 0, np.inf, np.inf))

  return X, U, obj, gradient, adjoints, lqr, it


