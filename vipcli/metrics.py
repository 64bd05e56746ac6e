"""Classification metrics, in percent, as the paper reports them (plus AUROC)."""

from __future__ import annotations

import statistics
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import numpy as np

from vipcli import shell


# a metrics.json split's scores and their titles, in the order of `vip train`'s table and the run report's
SCORE_TITLES = (("accuracy", "accuracy %"), ("balanced_accuracy", "balanced accuracy %"), ("macro_f1", "macro-F1 %"),
                ("auroc", "AUROC %"))


def compute_metrics(labels, probabilities, num_classes: int) -> dict:
    """Accuracy, balanced accuracy, macro-F1 and AUROC (percent) and the confusion matrix.

    Args:
        labels: [N] true class indices.
        probabilities: [N, C] predicted class probabilities.
        num_classes: C.
    Returns:
        {"n", "accuracy", "balanced_accuracy", "macro_f1", "auroc" (None if a class is absent),
        "confusion_matrix"}
    """
    labels = np.asarray(labels, dtype=int)
    probabilities = np.asarray(probabilities, dtype=float)
    if labels.size == 0:
        return {"n": 0, "accuracy": None, "balanced_accuracy": None, "macro_f1": None, "auroc": None,
                "confusion_matrix": []}
    predicted = probabilities.argmax(axis=1)
    classes = list(range(num_classes))
    auroc = None
    if len(set(labels.tolist())) == num_classes:
        if num_classes == 2:
            auroc = binary_auroc(labels == 1, probabilities[:, 1])
        else:  # one-vs-rest, the mean over the classes (macro)
            auroc = float(np.mean([binary_auroc(labels == c, probabilities[:, c]) for c in classes]))
    matrix = confusion_counts(labels, predicted, num_classes).tolist()
    exact = exact_figures(matrix)
    return {
        "n": int(labels.size),
        "accuracy": round_half_up(exact["accuracy"]),
        "balanced_accuracy": round_half_up(exact["balanced_accuracy"]),
        "macro_f1": round_half_up(exact["macro_f1"]),
        "auroc": None if auroc is None else round_half_up(Decimal(repr(float(auroc))) * 100),  # half up, as the rest
        "confusion_matrix": matrix,
    }


def confusion_counts(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    """[C, C] counts of images by true class (rows) and predicted class (columns): scikit-learn's
    `confusion_matrix(labels, predicted, labels=range(C))`, without importing it.

    Args:
        labels: [N] true class indices in 0..C-1.
        predicted: [N] predicted class indices in 0..C-1.
        num_classes: C.
    """
    cells = labels.astype(np.int64) * num_classes + predicted.astype(np.int64)  # [N] flat cell index
    return np.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def binary_auroc(positive: np.ndarray, scores: np.ndarray) -> float:
    """The area under the ROC curve of `scores` for the images where `positive` holds: scikit-learn's
    `roc_auc_score(positive, scores)`, computed the same way (its ROC points, tied scores one point, the
    collinear ones dropped, then the trapezoid rule), so that the float is the same to the last bit; it
    keeps scikit-learn and SciPy out of every `vip train` (about 1 s of a process on a 2-core CPU).

    Args:
        positive: [N] bool, both values present.
        scores: [N] float64 scores, higher for the positive class.
    """
    order = np.argsort(-scores, kind="stable")  # [N] highest score first
    ranked, hits = scores[order], positive[order].astype(np.float64)
    last_of_each_score = np.concatenate([np.flatnonzero(np.diff(ranked)), [ranked.size - 1]])  # [K]
    true_positives = np.cumsum(hits)[last_of_each_score]  # [K]
    false_positives = 1 + last_of_each_score.astype(np.float64) - true_positives  # [K]
    if false_positives.size > 2:  # drop the points collinear with their neighbours, as scikit-learn does
        corner = np.logical_or(np.diff(false_positives, 2), np.diff(true_positives, 2))  # [K - 2]
        kept = np.flatnonzero(np.concatenate([[True], corner, [True]]))
        true_positives, false_positives = true_positives[kept], false_positives[kept]
    true_positives = np.concatenate([[0.0], true_positives])
    false_positives = np.concatenate([[0.0], false_positives])
    tpr, fpr = true_positives / true_positives[-1], false_positives / false_positives[-1]
    return float((np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2.0).sum())


def exact_figures(confusion_matrix: list[list[int]]) -> dict:
    """Accuracy, balanced accuracy and macro-F1 in percent as exact fractions, from a [C, C] confusion
    matrix (rows true classes, columns predicted ones).

    Macro-F1 is sklearn's `f1_score(average="macro", zero_division=0)` over all C classes: per class
    2·TP / (2·TP + FP + FN), 0 for a class neither present nor predicted.
    Balanced accuracy (the ISIC challenges' balanced multiclass accuracy) is the mean of each class's recall,
    TP / (TP + FN), over the classes with images in the split: sklearn's `balanced_accuracy_score`. A class
    without images has no recall to average (counting it 0 would cap a model that finds every image at
    (C - 1) / C); its wrong predictions still lower the recall of the classes they belong to.
    Returns:
        {"accuracy", "balanced_accuracy", "macro_f1"}: Fractions (None each for an empty matrix).
    """
    classes = per_class_figures(confusion_matrix)
    total = sum(c["images"] for c in classes)
    if total == 0:
        return {"accuracy": None, "balanced_accuracy": None, "macro_f1": None}
    # 2·TP + FP + FN = (TP + FN) + (TP + FP): a class's images plus its predictions
    f1 = [Fraction(2 * c["found"], c["images"] + c["predicted"]) if c["images"] + c["predicted"] else Fraction(0)
          for c in classes]
    recall = [c["recall"] for c in classes if c["recall"] is not None]  # None: a class without images
    return {"accuracy": 100 * Fraction(sum(c["found"] for c in classes), total),
            "balanced_accuracy": sum(recall) / len(recall), "macro_f1": 100 * sum(f1) / len(f1)}


def split_figure(block: dict, key: str):
    """A metrics.json split block's figure `key` ("accuracy", "balanced_accuracy", ...) as stored; balanced accuracy
    always from the block's confusion matrix where it has one (an earlier vip stored none, or one that counted a
    class without images as 0), rounded as a stored one is; None without either."""
    matrix = block.get("confusion_matrix")
    if key in block and not (key == "balanced_accuracy" and isinstance(matrix, list) and matrix):
        return block[key]
    if isinstance(matrix, list) and matrix and key in ("accuracy", "balanced_accuracy", "macro_f1"):
        return round_half_up(exact_figures(matrix)[key])
    return None


def per_class_figures(confusion_matrix: list[list[int]]) -> list[dict]:
    """Per class of a [C, C] confusion matrix (rows true, columns predicted): how many images it has,
    how many were predicted as it, its sensitivity (recall) and precision (PPV) in percent, and its
    specificity: the share of the other classes' images not called it (with 2 classes, the other's
    sensitivity).

    Returns:
        [{"images", "found", "predicted", "others", "rejected", "recall", "precision", "specificity"}] in
        class order ("others": the other classes' images, "rejected": those of them not called this class);
        recall is None for a class without images, precision None for a class never predicted, specificity
        None without images of other classes (Fractions otherwise).
    """
    rows = [[int(count) for count in row] for row in confusion_matrix]
    total = sum(map(sum, rows))
    figures = []
    for c, row in enumerate(rows):
        images, found, predicted = sum(row), row[c], sum(r[c] for r in rows)
        others, rejected = total - images, total - images - (predicted - found)
        figures.append({"images": images, "found": found, "predicted": predicted, "others": others,
                        "rejected": rejected,
                        "recall": 100 * Fraction(found, images) if images else None,
                        "precision": 100 * Fraction(found, predicted) if predicted else None,
                        "specificity": 100 * Fraction(rejected, others) if others else None})
    return figures


def unfound_classes(class_names: list[str], figures: list[dict]) -> list[tuple[str, int]]:
    """(class name, its images) for each class with images of which the model finds none (sensitivity 0),
    from `per_class_figures` of a confusion matrix, in class order."""
    return [(name, f["images"]) for name, f in zip(class_names, figures) if f["images"] and f["found"] == 0]


def missed_classes_warning(confusion_matrix: list[list[int]], class_names: list[str], run: str = "RUN",
                           split: str = "test", uses_shots: bool = True) -> str:
    """A warning for a model that finds no image of a class on `split` (sensitivity 0), "" when it finds
    every class: with unbalanced classes (3 pneumonia X-rays to 1 normal) a model that calls every image
    the larger class still scores its share as accuracy, and the accuracy table alone hides it.

    Args:
        confusion_matrix: [C, C] rows true classes, columns predicted ones.
        class_names: the C class names.
        run: the run folder, named in the pointer to `vip report`.
        uses_shots: False for a zero-shot method, which more shots cannot help: the advice is then a
            method that learns from the labelled images.
    """
    figures = per_class_figures(confusion_matrix)
    missed = unfound_classes(class_names, figures)
    if not missed:
        return ""
    names = ", ".join(f"{name} (0 of {images})" for name, images in missed)
    predicted = [name for name, f in zip(class_names, figures) if f["predicted"]]
    total = sum(f["images"] for f in figures)
    accuracy = exact_figures(confusion_matrix)["accuracy"]
    if len(predicted) == 1:
        why = (f"it calls every {split} image {predicted[0]}, so its accuracy of {round_half_up(accuracy):.2f}% is "
               f"the share of {predicted[0]} among the {total} {split} images")
    else:
        why = f"its accuracy of {round_half_up(accuracy):.2f}% comes from the other classes alone"
    more = "try more shots" if uses_shots else "try a method that learns from labelled images (--method vip --shots 16)"
    return (f"the model finds no {split} image of {names}: {why} (macro-F1 and each class's sensitivity in "
            f"`{shell.command('vip', 'report', run)}` show it; {more}, or see what the backbone tells apart with "
            "`vip symptoms rank`)")


def missed_rows_warning(rows: list[dict], class_names: list[str], shown: int = 3, detail: str | None = None) -> str:
    """A benchmark's warning for its rows that find no test image of a class (`missed_classes_warning`
    for a sweep), by method and shots: "vip 4-shot (seeds 1, 2: NORMAL)"; "" when every row finds
    every class. A row without a confusion matrix is passed over. `detail` says in brackets where it shows (default:
    the console's table that does, `missed_rows_detail`)."""
    found: dict[tuple[str, str], dict[str, list]] = {}
    for row in rows:
        missed = row_unfound_classes(row, class_names)
        if missed:
            cell = found.setdefault((row["method"], str(row["shots"])), {"seeds": [], "classes": []})
            cell["seeds"].append(str(row["seed"]))
            cell["classes"] += [name for name in missed if name not in cell["classes"]]
    if not found:
        return ""
    cells = [f"{method}{'' if shots == '0' else f' {shots}-shot'} (seed{'s' if len(cell['seeds']) > 1 else ''} "
             f"{', '.join(cell['seeds'])}: {', '.join(cell['classes'])})" for (method, shots), cell in found.items()]
    more = f"; and {len(cells) - shown} more" if len(cells) > shown else ""
    rows_missing = sum(len(cell["seeds"]) for cell in found.values())
    detail = missed_rows_detail(rows) if detail is None else detail
    return (f"{rows_missing} {'row finds' if rows_missing == 1 else 'rows find'} no test image of a class: "
            f"{'; '.join(cells[:shown])}{more}; {'its' if rows_missing == 1 else 'their'} accuracy comes from the "
            f"other classes alone ({detail})")


def missed_rows_detail(rows: list[dict]) -> str:
    """Where `vip benchmark`'s console shows a row that finds no test image of a class: the balanced accuracy table
    (a class never found counts 0 there), or, where every class has as many test images and that table is one line
    saying it repeats the accuracy, the macro-F1 table; and the file with each row's matrix."""
    table = "macro-F1" if even_test_classes(rows) else "balanced accuracy"
    return f"the {table} table shows it; each row's test_confusion_matrix is in results.csv"


def even_test_classes(rows: list[dict]) -> int | None:
    """The images of each class on test when every row's test confusion matrix has the same number of each (150
    melanoma and 150 nevus): then each row's balanced accuracy is its accuracy, exactly (each class's recall
    weighs 1/C, as its share of the images does). None when the classes are uneven, a class has no test image,
    or a row has no confusion matrix (a sweep of an earlier vip may lack one)."""
    counts = set()
    for row in rows:
        matrix = row.get("test_confusion_matrix")
        if not isinstance(matrix, list) or not matrix:
            return None
        counts.update(sum(int(count) for count in true_row) for true_row in matrix)
    return counts.pop() if len(counts) == 1 and min(counts) > 0 else None


def shared_test_images(rows: list[dict], class_names) -> str:
    """What every row of a sweep is measured on, from the rows' test confusion matrices: '300 test images (150
    melanoma, 150 nevus)'; "" when no row records its matrix (rows of an earlier vip), or the rows were measured on
    different test images. The benchmark's tables, on the console and in `vip report`, say it above them."""
    per_class = shared_test_counts(rows)
    if per_class is None:
        return ""
    total = sum(per_class)
    named = isinstance(class_names, list) and len(class_names) == len(per_class)
    classes = f" ({', '.join(f'{n} {name}' for n, name in zip(per_class, class_names))})" if named else ""
    return f"{total} test {'image' if total == 1 else 'images'}{classes}"


def shared_test_counts(rows: list[dict]) -> tuple[int, ...] | None:
    """The test images of each class that every row of a sweep is measured on, from the rows' test confusion
    matrices; None when no row records its matrix, or the rows were measured on different test images."""
    counts = {tuple(sum(int(count) for count in true) for true in row["test_confusion_matrix"]) for row in rows
              if isinstance(row.get("test_confusion_matrix"), list) and row["test_confusion_matrix"]}
    return counts.pop() if len(counts) == 1 else None


def largest_class_guess(per_class) -> tuple[int, float] | None:
    """(index of the largest class, the accuracy in % of calling every test image that class), for test images whose
    classes are unbalanced (`per_class`: the test images of each class); None for balanced classes or no images.
    e.g. (1, 77.06) for ISIC's 117 melanoma and 393 nevus."""
    per_class = [int(n) for n in per_class or []]
    if len(per_class) < 2 or len(set(per_class)) == 1 or not sum(per_class):
        return None
    largest = max(range(len(per_class)), key=per_class.__getitem__)
    return largest, round_half_up(Fraction(100 * per_class[largest], sum(per_class)))


def largest_class_sentence(per_class, class_names) -> str:
    """What calling every test image the largest class would score, for test images whose classes are unbalanced
    (`per_class`: the test images of each class): accuracy then rewards the guess, and a model's accuracy reads
    only beside it. e.g. 'Calling every test image nevus, the largest class, would score an accuracy of 77.06%
    (a balanced accuracy of 50.00%) with no model at all.'; "" for balanced classes, or without counts or names."""
    per_class = [int(n) for n in per_class or []]
    guess = largest_class_guess(per_class)
    if not isinstance(class_names, list) or len(class_names) != len(per_class) or guess is None:
        return ""
    largest, share = guess
    balanced = round_half_up(Fraction(100, sum(1 for n in per_class if n)))
    which = "the largest class" if per_class.count(per_class[largest]) == 1 else "one of the largest classes"
    return (f"Calling every test image {class_names[largest]}, {which}, would score an accuracy of "
            f"{share:.2f}% (a balanced accuracy of {balanced:.2f}%) with no model at all.")


def round_half_up(value, digits: int = 2) -> float | None:
    """`value` (a Fraction, int, float or Decimal) rounded half up to `digits` decimals, computed exactly.

    A float is taken as written (`str(value)`): 53.335 is halfway and becomes 53.34, where round()
    gives 53.33 because the binary float is 53.33499...; a Decimal as it is.
    """
    if value is None:
        return None
    exact = Decimal(value.numerator) / Decimal(value.denominator) if isinstance(value, Fraction) \
        else Decimal(str(value))
    return float(exact.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP))


def mean_of_figures(values: list[float], digits: int = 2) -> float:
    """The mean of figures as stored (decimals such as 50.0 and 53.33), rounded half up to `digits` places.

    Computed in decimal, so a mean that falls exactly halfway always rounds the same way: the float
    mean of 50.0 and 53.33 is 51.66499..., which round() makes 51.66 while 53.335 became 53.34.
    """
    return round_half_up(sum(Decimal(str(v)) for v in values) / len(values), digits)


def row_figure(row: dict, key: str):
    """A row's figure `key` ("test_accuracy", "test_macro_f1", "test_auroc", ...) at full precision.

    Test accuracy, balanced accuracy and macro-F1 come exactly (a Fraction) from the row's confusion matrix,
    so means over seeds are not means of two-decimal figures (and a row of an earlier vip, which stored no
    balanced accuracy, has one); anything else, and rows without a matrix, as stored.
    """
    matrix = row.get("test_confusion_matrix")
    if key in ("test_accuracy", "test_balanced_accuracy", "test_macro_f1") and isinstance(matrix, list) and matrix:
        exact = exact_figures(matrix)[key.removeprefix("test_")]
        if exact is not None:
            return exact
    return row.get(key)


def mean_and_std(values: list) -> tuple[float | None, float | None]:
    """Mean (rounded half up) and sample std (n-1) of figures over seeds, both to two decimals.

    Args:
        values: figures over seeds (Fractions from `row_figure`, or stored floats); None ones skipped.
    Returns:
        (mean, std); (None, None) when there is no figure; std None for one (a spread needs two).
    """
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    if all(isinstance(v, Fraction) for v in values):
        mean = round_half_up(sum(values) / len(values))
    else:
        mean = mean_of_figures([float(v) for v in values])
    if len(values) < 2:
        return mean, None  # one seed: no spread, not a spread of 0
    return mean, round(statistics.stdev([float(v) for v in values]), 2)


def row_unfound_classes(row: dict, class_names: list[str]) -> list[str]:
    """The classes of which a benchmark row finds no test image (sensitivity 0), from its test confusion matrix;
    [] for a row without one, or without class names to name them by."""
    matrix = row.get("test_confusion_matrix")
    if not isinstance(matrix, list) or not matrix or not isinstance(class_names, list):
        return []
    return [name for name, _ in unfound_classes(class_names, per_class_figures(matrix))]


def misses_a_class(row: dict, class_names: list[str]) -> bool:
    """Whether a benchmark row finds no test image of some class (`row_unfound_classes`)."""
    return bool(row_unfound_classes(row, class_names))


def column_leaders(means: dict, unmarked: set | frozenset = frozenset()) -> dict[str, set[str]]:
    """{column: the methods with the highest mean in it (each of a tie)} from {(method, column): mean}
    (None: no figure), among the cells not in `unmarked` (which still count as figures to compare with); a
    column with fewer than two figures has no leader. The benchmark tables (console and report) show these in
    bold."""
    columns: dict[str, dict[str, float]] = {}
    compared: dict[str, int] = {}
    for (method, column), mean in means.items():
        if mean is not None:
            compared[column] = compared.get(column, 0) + 1
            if (method, column) not in unmarked:
                columns.setdefault(column, {})[method] = mean
    return {column: {method for method, mean in found.items() if mean == max(found.values())}
            for column, found in columns.items() if compared[column] > 1}


BEST_NOTE = {  # under each metric's table (console and report), by whether the sweep has several seeds; {} names
    # the bold cells, in words: a screen reader does not say that a cell is bold, nor does a log file keep it
    True: "In bold: the highest mean in each column (each of a tie){}. A lead smaller than the spread over the "
          "seeds may be chance.",
    False: "In bold: the highest figure in each column (each of a tie){}. One seed shows no spread, so a small "
           "lead may be chance.",
}


UNMARKED_NOTE = (" Not in bold, whatever their figure: cells whose rows find no test image of a class, since their "
                 "accuracy comes from the other classes alone.")


def best_note(leaders: dict[str, set[str]], methods: list[str], columns: list[str], several_seeds: bool,
              unmarked: bool = False) -> str:
    """The line under a benchmark table that names its bold cells: `leaders` as `column_leaders` gives them,
    `methods` and `columns` in the table's order ("...: vip at 1-shot, coop and vip at 4-shot. ..."); `unmarked`:
    cells were left out of the lead (`unmarked_cells`), which the line then says. "" when no cell is bold (one
    method in each column, or no figures to compare): a line saying "In bold: ..." would describe cells that are
    not there."""
    named = ", ".join(f"{' and '.join(m for m in methods if m in leaders[c])} at {c}-shot"
                      for c in columns if c in leaders)
    if not named:
        return ""
    return BEST_NOTE[several_seeds].format(f": {named}") + (UNMARKED_NOTE if unmarked else "")


def unmarked_cells(rows: list[dict], class_names: list[str], metric: str) -> set[tuple[str, str]]:
    """The (method, shots column) cells of a benchmark's `metric` table that may not lead it: for accuracy, those
    with a row that finds no test image of a class (on unbalanced data, calling every image the larger class
    scores its share, and led ISIC's table in bold); none for the other metrics, which such a row brings down. A
    method that uses no shots (rows at shots 0) counts for every column."""
    if metric not in ("accuracy", "test_accuracy"):
        return set()
    missing = {(row["method"], str(row["shots"])) for row in rows if misses_a_class(row, class_names)}
    columns = {str(row["shots"]) for row in rows if str(row["shots"]) != "0"} or {"0"}
    return {(method, column) for method, shots in missing for column in (columns if shots == "0" else {shots})}


CAPPED_MARK = "†"  # after a shots column's heading (console and report) whose rows trained on fewer images


def capped_columns(rows: list[dict]) -> dict[str, int]:
    """{shots column ("4"): the fewest training images per class any of its rows trained with} for the
    columns whose rows had fewer than the column says (a class with fewer training images; each row
    records `shots_used`). The benchmark tables (console and report) mark these columns."""
    capped: dict[str, int] = {}
    for row in rows:
        shots, used = str(row.get("shots")), row.get("shots_used")
        if shots.isdigit() and isinstance(used, int) and used < int(shots):
            capped[shots] = min(used, capped.get(shots, used))
    return capped


def capped_note(capped: dict[str, int]) -> str:
    """The footnote to the marked columns: '† capped: a class has fewer training images than these shots;
    their rows used as few as 1 image per class at 4 shots (shots_used in results.csv)'; "" when none is."""
    if not capped:
        return ""
    first, *more = sorted(capped, key=int)
    cases = [f"{capped[first]} image{'s' if capped[first] != 1 else ''} per class at {first} shots",
             *(f"{capped[shots]} at {shots} shots" for shots in more)]
    return (f"{CAPPED_MARK} capped: a class has fewer training images than these shots; their rows used as few "
            f"as {', '.join(cases)} (shots_used in results.csv)")
