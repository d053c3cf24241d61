"""Model versions section of the Correct & retrain tab: the project folder's v001, v002…

The table lists the versions of the project folder; "Use this version" makes one
current and the model the Predict tab uses, "Predict with it" also predicts the
image layer with it (keeping the slices the user edited).

Without a chosen project folder the project is where fine-tuning puts the next
version (:func:`default_project`): the folder of a model that is itself a version
(``project/v001``), else ``./<model>-finetuned`` (``~/napari-unet-models/<model>-
finetuned`` if the working folder is read-only) -- never the installed package's
folder of the shipped model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import FileEdit
from qtpy.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QWidget,
)

from napari_unet.engine.errors import UserInputError

from . import notify
from .layer_utils import is_user_writable, user_folder
from .loop_section import LoopSection, row

if TYPE_CHECKING:
    from napari.layers import Image

    from napari_unet.engine.model.versions import VersionStore

    from .dock_context import DockContext, Predictor
    from .workers import Job

__all__ = ["VERSION_NAME", "VersionsPanel", "default_project"]

VERSION_NAME = re.compile(r"^v\d{3,}$")


def default_project(model_dir: Path) -> Path:
    """The project of `model_dir` when none is chosen: its folder if it is a version in a
    writable folder, else ``<working folder>/<model>-finetuned`` (as the engine's
    fine-tuning does), in the home folder if the working folder is read-only."""
    model_dir = Path(model_dir)
    if VERSION_NAME.match(model_dir.name) and is_user_writable(model_dir.parent):
        return model_dir.parent
    name = model_dir.parent.name if VERSION_NAME.match(model_dir.name) else model_dir.name
    base = Path.cwd() if is_user_writable(Path.cwd()) else user_folder()
    return base / f"{name}-finetuned"


class VersionsPanel(LoopSection):
    """The project folder picker and the table of model versions.

    Parameters
    ----------
    context
        The dock's shared state (current model folder, status).
    predictor
        The Predict tab ("Predict with it").
    image_layer
        The image layer the corrections are on (predicted by "Predict with it").
    evaluation
        ``evaluation(version)``: the last ground-truth metrics of a version, or None.
    """

    def __init__(
        self,
        context: DockContext,
        predictor: Predictor,
        image_layer: Callable[[], Image | None],
        evaluation: Callable[[str], dict[str, Any] | None],
        parent: QWidget | None = None,
    ) -> None:
        super().__init__("Model versions", parent)
        self.context = context
        self.predictor = predictor
        self._image_layer = image_layer
        self._evaluation = evaluation
        self._closed = False
        # shown in the Fine-tune form; it also locates the autosaves
        self.project_folder = FileEdit(
            label="Project folder",
            mode="d",
            value="",
            tooltip="Holds the model versions v001, v002… and "
            "autosave/; default: the current model's folder parent",
        )
        self.versions_table = QTableWidget(0, 5)
        self.versions_table.setHorizontalHeaderLabels(
            ["version", "in use", "parent", "created", "metrics"]
        )
        self.versions_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.versions_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.versions_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.versions_table.verticalHeader().setVisible(False)
        self.versions_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents
        )
        self.versions_table.setMaximumHeight(130)
        self.use_button = QPushButton("Use this version")
        self.predict_button = QPushButton("Predict with it")
        self.refresh_versions_button = QPushButton("Refresh")
        self.add_widgets(
            [
                self.versions_table,
                row(self.use_button, self.predict_button, self.refresh_versions_button),
            ]
        )
        self.use_button.clicked.connect(lambda *_: self.use_version())
        self.predict_button.clicked.connect(lambda *_: self.predict_with_version())
        self.refresh_versions_button.clicked.connect(lambda *_: self.refresh_versions())

    # ----------------------------------------------------------------- the project

    def _chosen_project(self) -> Path | None:
        text = str(self.project_folder.value or "").strip()
        return Path(text).expanduser() if text not in ("", ".") else None

    def project_dir(self) -> Path | None:
        """Folder of the model versions: the chosen project folder, else
        :func:`default_project` of the current model (None without a model)."""
        chosen = self._chosen_project()
        if chosen is not None:
            return chosen
        model_dir = self.context.model_dir()
        if model_dir is not None:
            return default_project(Path(model_dir))
        return None

    def version_store(self) -> VersionStore | None:
        """The :class:`VersionStore` of :meth:`project_dir` (None without a project)."""
        from napari_unet.engine.model.versions import VersionStore

        project = self.project_dir()
        return VersionStore(project) if project is not None else None

    def next_version_path(self) -> Path | None:
        """Where fine-tuning writes: the next ``vNNN`` of :meth:`project_dir` (None
        without a project: the engine then picks one beside the parent model).

        Raises
        ------
        UserInputError
            If the project folder cannot hold versions.
        """
        project = self.project_dir()
        if project is None:
            return None
        from napari_unet.engine.model.versions import VersionStore

        return VersionStore(project).next_path()

    def current_model_dir(self) -> Path:
        """The model to fine-tune: the dock's current model, else the store's current version.

        Raises
        ------
        UserInputError
            If there is none.
        """
        model_dir = self.context.model_dir()
        if model_dir is not None:
            return Path(model_dir)
        store = self.version_store()
        current = store.current() if store is not None else None
        if current is None:
            raise UserInputError(
                "no current model: train one, load one on the Predict tab, "
                "or choose a project folder with versions"
            )
        return current.path

    # ----------------------------------------------------------------- the table

    def refresh_versions(self) -> None:
        """Fill the versions table from the project folder."""
        if self._closed:
            return
        store = self.version_store()
        versions = store.versions() if store is not None else []
        current = store.current() if store is not None else None
        folder = self.context.model_dir()
        model_dir = Path(folder).resolve() if folder else None
        table = self.versions_table
        table.setRowCount(len(versions))
        for index, info in enumerate(versions):
            in_use = (
                (model_dir == info.path.resolve())
                if model_dir is not None
                else (current is not None and current.name == info.name)
            )
            created = (info.created or "").replace("T", " ")[:19]
            cells = [
                info.name,
                "✓" if in_use else "",
                info.parent or "",
                created,
                _metrics_text(info.metrics, self._evaluation(info.name)),
            ]
            for col, text in enumerate(cells):
                table.setItem(index, col, QTableWidgetItem(text))
            if in_use:
                table.selectRow(index)

    def version_names(self) -> list[str]:
        """Names in the versions table, top to bottom."""
        return [
            self.versions_table.item(r, 0).text() for r in range(self.versions_table.rowCount())
        ]

    def _selected_version(self, name: str | None) -> Any:
        store = self.version_store()
        if store is None:
            raise UserInputError("no project folder: train or load a model first, or choose one")
        if name is None:
            index = self.versions_table.currentRow()
            if index < 0:
                selected = self.versions_table.selectionModel().selectedRows()
                index = selected[0].row() if selected else -1
            if index < 0:
                raise UserInputError("select a version in the list first")
            name = self.versions_table.item(index, 0).text()
        return store.get(name)

    def use_version(self, name: str | None = None) -> Path | None:
        """Make version `name` (default: the selected row) current and the prediction model."""
        try:
            info = self._selected_version(name)
            self.version_store().set_current(info.name)
        except UserInputError as exc:
            notify.error(str(exc))
            return None
        self.context.set_model_dir(info.path, "trained")
        self.refresh_versions()
        self.context.status(f"model version {info.name} is in use ({info.path})")
        return info.path

    def predict_with_version(self, name: str | None = None) -> Job | None:
        """Use version `name` (default: selected) and predict the image layer with it."""
        if self.use_version(name) is None:
            return None
        image = self._image_layer()
        if image is not None:
            self.predictor.image.value = image
        return self.predictor.predict()

    def shutdown(self) -> None:
        """Stop refreshing the table."""
        self._closed = True


def _metrics_text(train_metrics: dict[str, Any], evaluation: dict[str, Any] | None) -> str:
    parts = []
    for key in ("loss", "val_loss", "val_dice", "val_rand_fscore"):
        value = train_metrics.get(key)
        if isinstance(value, (int, float)):
            parts.append(f"{key} {value:.3f}")
    if evaluation is not None:
        parts.append(f"GT Rand F {evaluation['rand_fscore']:.3f}, Dice {evaluation['dice']:.3f}")
    return ", ".join(parts)
