//! `render`: a pure function of the state onto a frame, one file per pane or
//! overlay. Nothing here changes state.

pub mod detail;
pub mod dialog;
pub mod layout;
pub mod list;
pub mod markdown;
pub mod overlay;
pub mod status;
pub mod theme;

use ratatui::Frame;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

use super::state::{Mode, State};
use layout::{MIN_HEIGHT, MIN_WIDTH, areas, too_small};
use theme::Theme;

pub fn render(state: &State, frame: &mut Frame) {
    let area = frame.area();
    let theme = Theme::new(state.settings.theme, state.settings.no_color);
    if too_small(area.width, area.height) {
        let text = format!(
            "Terminal too small: {}x{}, need {MIN_WIDTH}x{MIN_HEIGHT}",
            area.width, area.height
        );
        frame.render_widget(
            Paragraph::new(Line::from(Span::styled(text, theme.warning))).wrap(Wrap { trim: true }),
            area,
        );
        return;
    }
    let areas = areas(state, area);
    status::render_tabs(state, &theme, frame, areas.tabs);
    if let Some(banner) = areas.banner {
        status::render_banner(state, &theme, frame, banner);
    }
    if let Some(list) = areas.list {
        list::render(state, &theme, frame, list);
    }
    if let Some(detail) = areas.detail {
        detail::render(state, &theme, frame, detail);
    }
    if let Some(activity) = areas.activity {
        status::render_activity(state, &theme, frame, activity);
    }
    if let Some(filter) = areas.filter {
        status::render_filter(state, &theme, frame, filter);
    }
    status::render_status(state, &theme, frame, areas.status);
    match &state.mode {
        Mode::Dialog(dialog) => dialog::render(state, dialog, &theme, frame),
        Mode::Help { scroll } => overlay::render_help(state, *scroll, &theme, frame),
        Mode::Palette { input, selected } => {
            overlay::render_palette(input, *selected, &theme, frame)
        }
        Mode::ConfirmBulk { intent_ids } => {
            overlay::render_confirm_bulk(state, intent_ids, &theme, frame)
        }
        Mode::Normal | Mode::Filter { .. } => {}
    }
}
