#pragma once
// Small inline-SVG charts for the HTML report: axes with round-number ticks,
// lines or dots per series, a legend. Self-contained markup (no scripts, no
// external fonts), so the report opens offline in any browser.

#include <string>
#include <utility>
#include <vector>

namespace ember {

struct PlotSeries {
  std::string name;
  std::string color;  // CSS color
  std::vector<std::pair<double, double>> points;
  bool dots = false;  // scatter instead of a line
  bool labels = false;  // print each point's label next to it (sweeps)
  std::vector<std::string> point_labels;
};

inline PlotSeries line_series(std::string name, std::string color, std::vector<std::pair<double, double>> points = {}) {
  PlotSeries s;
  s.name = std::move(name), s.color = std::move(color), s.points = std::move(points);
  return s;
}
inline PlotSeries dot_series(std::string name, std::string color) {
  PlotSeries s = line_series(std::move(name), std::move(color));
  s.dots = true;
  return s;
}

struct PlotSpec {
  std::string id;  // the <svg> element's id
  std::string title, x_label, y_label;
  std::vector<PlotSeries> series;
};

std::string svg_plot(const PlotSpec& spec);

// Round tick positions covering [lo, hi] (about `target` of them): 1, 2, 5 x 10^k steps.
std::vector<double> nice_ticks(double lo, double hi, int target = 5);

// Escapes &, <, >, " for HTML text and attributes.
std::string html_escape(const std::string& s);

}  // namespace ember
