//! Where everything goes. Shared by `render` and by `update` (which needs the
//! list's height for paging and the list's position for mouse clicks), so both
//! always agree.

use ratatui::layout::{Constraint, Layout, Rect};

use crate::tui::state::{Connection, Mode, State};

/// Below this the inbox shows a "too small" screen instead.
pub const MIN_WIDTH: u16 = 30;
pub const MIN_HEIGHT: u16 = 8;
/// From this width the detail sits beside the list; below, under it.
const SIDE_BY_SIDE_WIDTH: u16 = 100;
/// Below this height (and narrower than side by side) only the list shows; `z`
/// zooms into the detail.
const STACKED_MIN_HEIGHT: u16 = 20;
/// The activity pane (agents resuming, decisions sent) needs this much height.
const ACTIVITY_MIN_HEIGHT: u16 = 24;
/// Its size: a border and the latest lines.
pub const ACTIVITY_LINES: u16 = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Areas {
    pub tabs: Rect,
    pub banner: Option<Rect>,
    pub list: Option<Rect>,
    pub detail: Option<Rect>,
    pub activity: Option<Rect>,
    pub filter: Option<Rect>,
    pub status: Rect,
}

pub fn too_small(width: u16, height: u16) -> bool {
    width < MIN_WIDTH || height < MIN_HEIGHT
}

fn shows_filter_line(state: &State) -> bool {
    matches!(state.mode, Mode::Filter { .. }) || !state.inbox.filter.text.is_empty()
}

pub fn areas(state: &State, area: Rect) -> Areas {
    let banner_height = u16::from(matches!(state.connection, Connection::Offline { .. }));
    let filter_height = u16::from(shows_filter_line(state));
    let activity_height = if state.notices.is_empty() || area.height < ACTIVITY_MIN_HEIGHT {
        0
    } else {
        ACTIVITY_LINES + 2
    };
    let [tabs, banner, body, activity, filter, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(banner_height),
        Constraint::Min(1),
        Constraint::Length(activity_height),
        Constraint::Length(filter_height),
        Constraint::Length(1),
    ])
    .areas(area);
    let (list, detail) = if state.zoomed {
        (None, Some(body))
    } else if body.width >= SIDE_BY_SIDE_WIDTH {
        let [list, detail] =
            Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)])
                .areas(body);
        (Some(list), Some(detail))
    } else if body.height >= STACKED_MIN_HEIGHT {
        let [list, detail] =
            Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(body);
        (Some(list), Some(detail))
    } else {
        (Some(body), None)
    };
    Areas {
        tabs,
        banner: (banner_height > 0).then_some(banner),
        list,
        detail,
        activity: (activity_height > 0).then_some(activity),
        filter: (filter_height > 0).then_some(filter),
        status,
    }
}

/// Task rows that fit in the list (inside its border, under its header).
pub fn list_rows(state: &State) -> usize {
    areas(state, Rect::new(0, 0, state.width, state.height))
        .list
        .map_or(0, |list| usize::from(list.height.saturating_sub(3)))
}
