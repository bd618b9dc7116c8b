"""`edgeopt steps`: the optimization steps a recipe can list under `optimize:`, and their options."""


def add(sub):
    p = sub.add_parser("steps", help="list the optimization steps (prune, cluster, qat, distill) and their options")
    p.add_argument("--markdown", action="store_true", help="Markdown tables (as in the README)")
    p.set_defaults(func=_steps)


def _steps(args):
    from ..steps.docs import reference

    print(reference(markdown=args.markdown))
    print("\nA recipe lists steps in order under optimize:, e.g. [prune, cluster, qat] or "
          "[{distill: {student: ds_cnn}}, prune, qat]; options sit beside a step: {prune: {target_sparsity: 0.8}}.")
